"""The corpus of ``rxtts bench realistic``: 22 assistant answers as an LLM streams them,
the voice they are spoken with and the goals of issue 12.

First sentences of 70-99 characters, numbers, lists, and four answers with a tool-call
stall (:data:`STALL_MARK` in the raw text: the tokens stop there for a while).
"""

from __future__ import annotations

from dataclasses import dataclass

VOICE = 1071
GOAL_TTFA_P50_MS = 300.0
GOAL_TTFA_P90_MS = 450.0
GOAL_DEAD_AIR_MS = 150.0
GOAL_ENGINE_FIRST_MS = 80.0
GOAL_ACK_P99_MS = 50.0

STALL_MARK = "⏸"
"""Where a raw answer's tokens stop for a tool call (removed from the spoken text)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One assistant answer of the corpus."""

    name: str
    """Short label for the tables."""
    text: str
    """What the LLM streams (the stall mark removed)."""
    stall_at: int | None = None
    """Character offset where the tokens stop (a tool call; see ``rxtts.bench.realistic.STALL_S``)."""


def _answer(name: str, raw: str) -> Answer:
    at = raw.find(STALL_MARK)
    return Answer(name, raw.replace(STALL_MARK, ""), at if at >= 0 else None)


CORPUS: tuple[Answer, ...] = tuple(
    _answer(name, raw)
    for name, raw in (
        (
            "weather",
            "The forecast for Berlin shows light clouds this morning and sunshine after lunch. "
            "Expect a high of 18 degrees and a gentle breeze from the west. "
            "A light jacket should be enough this evening.",
        ),
        (
            "recipe list",
            "For a simple tomato pasta you only need a handful of things from the pantry. "
            "Take 400 grams of spaghetti, 2 cloves of garlic, a can of tomatoes and some fresh basil. "
            "Cook the pasta for 9 minutes while the sauce simmers.",
        ),
        (
            "flight (tool call)",
            "Let me check the latest departure times for your flight to Lisbon tomorrow. ⏸"
            "Your flight leaves at 7:45 in the morning from terminal 1. "
            "Boarding closes 20 minutes before departure, so plan to be at the gate by 7:25.",
        ),
        (
            "temperature",
            "To convert 72 degrees Fahrenheit to Celsius, subtract 32 and multiply by five ninths. "
            "That gives you about 22 degrees Celsius, which is a comfortable room temperature.",
        ),
        (
            "router steps",
            "Here are the three steps to reset your router without losing your settings. "
            "First, hold the reset button for 5 seconds. "
            "Second, wait until the power light turns green. "
            "Third, log in again with the password printed on the back.",
        ),
        (
            "orders (tool call)",
            "I will look up your last three orders in the account system right now. ⏸"
            "The most recent one shipped on Monday and should arrive by Thursday. "
            "The other two were delivered last week, and both were signed for at the front door.",
        ),
        (
            "eiffel tower",
            "The Eiffel Tower was completed in 1889 as the entrance arch to the World's Fair in Paris. "
            "It is about 330 metres tall, and for 41 years it was the tallest structure in the world.",
        ),
        (
            "sleep",
            "Most adults need between seven and nine hours of sleep each night to feel rested. "
            "Going to bed at the same time every day helps, even on weekends. "
            "Try to avoid screens for an hour before you turn off the lights.",
        ),
        (
            "python file",
            "In Python, the easiest way to read a file line by line is a simple loop over the open file. "
            "Use a with statement so that the file is closed for you. "
            "Each line keeps its newline character, so call strip if you do not want it.",
        ),
        (
            "budget",
            "Your monthly budget leaves about 350 dollars after rent, groceries and transport are paid. "
            "If you save half of that, you will have 2100 dollars by the end of the year. "
            "That is a solid start for an emergency fund.",
        ),
        (
            "calendar (tool call)",
            "Sure, let me check your calendar for free slots next Tuesday afternoon. ⏸"
            "You are free from 2 to 4 pm, and again after 5. "
            "Should I book the meeting with Anna at 2:30?",
        ),
        (
            "packing list",
            "For a weekend in the mountains, pack layers because the weather can change quickly up there. "
            "Bring a warm jacket, a rain cover, sturdy shoes and a small first aid kit. "
            "Do not forget a water bottle.",
        ),
        (
            "heat pump",
            "A heat pump moves warmth from the outside air into your home instead of burning fuel. "
            "Even at minus 10 degrees the air still holds enough energy to be useful. "
            "That is why a good heat pump delivers three units of heat for every unit of electricity.",
        ),
        (
            "football",
            "The match ended in a 2 to 1 win for the home team after a late goal in the 88th minute. "
            "The visitors had more of the ball but created very few real chances. "
            "The next game is on Saturday at 3 pm.",
        ),
        (
            "rice",
            "Yes, you can freeze cooked rice safely if you cool it quickly and keep it in airtight bags. "
            "It keeps for about a month. "
            "Reheat it until it is steaming hot all the way through.",
        ),
        (
            "trip cost (tool call)",
            "One moment while I work out the total cost of the trip at the current exchange rate. ⏸"
            "The hotel, the train tickets and the museum passes come to about 1240 euros for two people. "
            "That is roughly 1350 dollars at today's rate.",
        ),
        (
            "spanish",
            "The Spanish word for library is biblioteca, while libreria actually means bookshop. "
            "It is a common mistake for English speakers, because the words look so similar. "
            "Remember that a library lends books and a bookshop sells them.",
        ),
        (
            "planets list",
            "There are four planets in the inner solar system, and all of them are made mostly of rock. "
            "In order from the sun they are Mercury, Venus, Earth and Mars. "
            "Mars is about half the size of Earth.",
        ),
        (
            "battery",
            "If your phone battery drains quickly, the screen and background apps are usually the cause. "
            "Lower the brightness, turn off location for apps that do not need it, and check the "
            "battery page in the settings. "
            "A battery below 80 percent health may simply need replacing.",
        ),
        (
            "directions",
            "From the central station, walk north along the river for about ten minutes to the old bridge. "
            "Cross it and turn left at the bakery. "
            "The museum entrance is the second door on the right.",
        ),
        (
            "water",
            "Roughly 71 percent of the surface of the Earth is covered by water, "
            "almost all of it in the oceans. "
            "Only about 3 percent of that water is fresh, "
            "and most of it is frozen in ice sheets and glaciers.",
        ),
        (
            "email draft",
            "I have drafted a short reply to your landlord about the broken heating in the kitchen. "
            "It asks for a repair visit before Friday "
            "and mentions that the problem started on the 3rd of March. "
            "Would you like me to send it now, or read it to you first?",
        ),
    )
)


__all__ = ["CORPUS", "STALL_MARK", "Answer"]

"""The procedural writer: offline, deterministic by seed, built on the bundled catalog.

Every function is pure and synchronous. Randomness comes from `random.Random` seeded with a SHA-256
of the inputs (never `hash()`, which is salted per process), so the same inputs give byte-identical
protos in any process. A scene depends only on its arguments: episode-level choices (who drives
which plot, the props, the running gag, the order of locations and humour patterns) are re-derived
from (show, setting, cast, seed) by every call, so scenes can be written concurrently, in any
order, and cached one by one.

Lines come from templates filled with the characters' voices (tics and catchphrases, sparingly),
the setting's lexicon, vocabulary and props, and the scene's beat. Jokes follow the humour pattern
library: each pattern has setup/punchline pairs below, and every joke is scored by `score_joke`.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import TypeAlias

from doppelganger.v1 import episode_pb2
from services.script.validation import CLUSTER_SECONDS, element_seconds
from shared import catalog
from shared.catalog import HumorPattern, SettingProfile

WRITER_NAME = "procedural"
PROMPT_VERSION = "1"

# Joke scoring: named dimensions in [0, 1] and their weights (they sum to 1).
#   surprise      - share of the line's content words not heard in the preceding lines, plus a
#                   bonus when the last content word is new (the turn lands at the end)
#   brevity       - 5 to 16 words is ideal; shorter or longer decays linearly
#   punch         - the line ends on a strong content word rather than a filler word
#   character_fit - the speaker's archetype is one the pattern suits (payoff archetypes)
#   setting_fit   - mentions of the setting's vocabulary, props and lexicon
#   callback      - refers back to something planted earlier (running gag, earlier props)
JOKE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "surprise": 0.25,
        "brevity": 0.15,
        "punch": 0.15,
        "character_fit": 0.20,
        "setting_fit": 0.15,
        "callback": 0.10,
    }
)

Show: TypeAlias = episode_pb2.Show
Setting: TypeAlias = episode_pb2.Setting
Character: TypeAlias = episode_pb2.Character
Relationship: TypeAlias = episode_pb2.Relationship
Outline: TypeAlias = episode_pb2.Outline
Scene: TypeAlias = episode_pb2.Scene
SETUP = episode_pb2.JOKE_ROLE_SETUP
PUNCHLINE = episode_pb2.JOKE_ROLE_PUNCHLINE

MAX_SCENES = 20
MAX_ACTS = 5
ACT_NAMES = ("Act One", "Act Two", "Act Three", "Act Four", "Act Five")
COLD_OPEN = "Cold Open"
TAG = "Tag"
TIMES_OF_DAY = ("MORNING", "DAY", "DAY", "AFTERNOON", "EVENING", "NIGHT")
TIC_CHANCE = 0.18
PARENTHETICAL_CHANCE = 0.22
CATCHPHRASE_CHANCE = 0.4
CALLBACK_CHANCE = 0.45
OFF_LIBRARY_CHANCE = 0.3
MAX_TICS_PER_SPEAKER = 2
GENERIC_PROPS = ("mystery envelope", "borrowed ladder", "sheet cake", "spare key")
GENERIC_VOCABULARY = ("rumour", "deadline", "favour", "paperwork")
_EXTERIOR_WORDS = re.compile(
    r"\b(STREET|SURFACE|YARD|GARDEN|CLEARING|ROOF|ROOFTOP|PERIMETER|FOREST|RIDGE|DOCK|ALLEY|"
    r"COURTYARD|FIELD|FIELDS|BEACH|SHORE|OUTSIDE|TRAIL|CORRAL|BATTLEMENTS|MARKET|BRIDGE PATH|"
    r"QUARTERDECK|MAIN DECK|HULL|PATH|STEPS|LOT)\b"
)


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_A_BEFORE_VOWEL = re.compile(r"(?<![\w'])a (?=[aeioAEIO])")
_SENTENCE_START = re.compile(r"(?<!\.)([.!?]\s+)([a-z])")
_SMALL_WORDS = _wordset("a an and at by for in of on or the to with")
_LOWER_STARTERS = _wordset(
    "a all an and are but can could did do don't everybody everyone he her his how if is it "
    "it's just let's look maybe my no nobody now okay our she so that that's the then there "
    "there's they this we well what what's when where who why will would yes you you're your"
)

# ---------------------------------------------------------------------------------------------
# Story grammar: the episode's A plot, B plot and running gag.

WANTS = (
    "sneak into {event} disguised as somebody important",
    "fix the {prop} before {boss} finds out who broke it",
    "get rich selling {food} out of the back of the {vehicle}",
    "land a starring part in {event}",
    "prove {partner} wrong about the {prop}, whatever it costs",
    "pass off the {prop} as a priceless heirloom in front of {visitor}",
    "throw {visitor} a welcome party that nobody can afford",
    "win the {money} prize at {event} with a talent nobody has seen",
)
B_ISSUES = (
    "{b1} and {b2} bet {money} on who can go longest without mentioning the {b_prop}",
    "{b1} borrows {b2}'s {b_prop} and returns it noticeably different",
    "{b1} discovers {b2} has been taking secret lessons in something embarrassing",
    "{b1} and {b2} are forced to share {b_prop} duty and cannot agree on anything",
    "{b1} is convinced the {b_prop} is cursed, and {b2} makes the mistake of agreeing",
    "{b1} and {b2} fall out over who gets the credit for the {b_prop}",
)
RUNNERS = (
    "the {runner_prop} keeps turning up wherever {runner} least wants it",
    "nobody can remember who is responsible for the {runner_prop}",
    "{runner} keeps trying to return the {runner_prop} and nobody will take it",
)
TITLES = (
    "The {Prop}",
    "{lead} and the {Prop}",
    "The One with the {Prop}",
    "A {Prop} for {partner}",
    "{lead}'s Big Night",
    "Much Ado About the {Prop}",
)
LOGLINE = (
    "{show}, relocated to {setting_lower}: {lead}, {role}, sets out to {want}, while {b_issue}."
)
BEAT_TEMPLATES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "inciting": (
            "{lead} hears about {event} and decides to {want}; {partner} says no, "
            "which settles it.",
            "{lead} makes a rash promise that only a plan to {want} can keep; "
            "{partner} smells trouble.",
        ),
        "scheme": (
            "{lead} ropes {partner} into the plan, and the {prop} becomes essential to it.",
            "{lead} recruits help, a disguise and the {prop}; {partner} agrees to nothing "
            "and is in anyway.",
        ),
        "complication": (
            "The {prop} goes missing at the worst moment, and {lead} improvises a cover "
            "story for {partner}.",
            "{visitor} turns up early and {lead} must keep the {prop} out of sight.",
        ),
        "escalation": (
            "The cover story grows a second floor: {lead} must now keep it up in front "
            "of {boss}, with {partner} as a reluctant witness.",
            "{lead} doubles down, and {partner} is forced to play along in front of {visitor}.",
        ),
        "climax": (
            "Everything collides at {event}: {lead}'s scheme runs straight into {b1} and "
            "{b2}'s feud over the {b_prop}, and the truth comes out all at once.",
            "{b1} and {b2}'s quarrel spills into {lead}'s big moment, and {partner} has to "
            "choose whose disaster to save.",
        ),
        "spark": ("{B_issue}.", "It starts small: {b_issue}."),
        "friction": (
            "{b1} and {b2} each recruit allies over the {b_prop}; nobody wants to be recruited.",
            "{b1} and {b2} stop speaking, which makes them much louder.",
        ),
        "b-escalation": (
            "{b2} raises the stakes; {b1} refuses to back down, even with {hazard} on the way.",
            "{b1} draws up rules for the {b_prop}; {b2} breaks every one of them before lunch.",
        ),
        "cold": (
            "Cold open: {runner_gag}, and {runner} is running out of patience.",
            "Cold open: {runner} finds the {runner_prop} somewhere it cannot possibly be.",
        ),
        "tag": (
            "Tag: {runner} makes one last attempt to be rid of the {runner_prop}, and it ends "
            "exactly as badly as everyone expected.",
            "Tag: the {runner_prop} has the last word.",
        ),
    }
)
A_STAGES = ("inciting", "scheme", "complication", "escalation")
B_STAGES = ("spark", "friction", "b-escalation")

# ---------------------------------------------------------------------------------------------
# Line grammar. Slots: {me} {you} {other} {lead} {partner} {b1} {b2} {runner} {prop} {b_prop}
# {runner_prop} {want} {vocab} {vocab2} {my_role} {your_role}, the lexicon keys
# (catalog.LEXICON_KEYS) and upper-case {PROP} {B_PROP} {DRINK} {OTHER}.

OPENERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "inciting": (
            "{you}, have you heard? {event} is coming, and I have decided to {want}.",
            "I've been thinking, {you}. It's time somebody decided to {want}. That somebody is me.",
            "Don't say no yet. Just listen. I want to {want}.",
        ),
        "scheme": (
            "Here's the plan. Step one: nobody panics. Step two: we get the {prop}. "
            "Step three is flexible.",
            "I need you for something, {you}. It's perfectly legal. Mostly. In spirit.",
            "Everything's arranged. I've got a disguise, a cover story and a {vehicle} on standby.",
        ),
        "complication": (
            "{you}, don't be mad. The {prop} is... not where I left it.",
            "We have a problem. {boss} is asking questions about the {prop}.",
            "Small snag: {visitor} has arrived early, and they want to see the {prop}.",
        ),
        "escalation": (
            "I told {boss} one tiny fib, and now there's a whole story with characters in it. "
            "You're one of them.",
            "It's gotten bigger, {you}. There's a second {prop} now, and {visitor} thinks "
            "it's real.",
            "Nobody panic, but I may have promised {boss} a demonstration. Tonight.",
        ),
        "climax": (
            "Everybody stop! Before anyone says one more word about the {prop}, I can explain.",
            "All right! I'll tell you everything. It started with the {prop}, and it ends with "
            "{b1} and {b2} in the middle of it.",
            "{event} starts in five minutes, the {prop} is missing, and {b1} and {b2} are still "
            "at war. This is fine.",
        ),
        "spark": (
            "{you}, I'm only going to ask once. What did you do to my {b_prop}?",
            "I bet you {money} you can't go one day without mentioning the {b_prop}.",
            "I know what you did with the {b_prop}, {you}. Everybody at {place} knows.",
        ),
        "friction": (
            "Somebody tell {you} I'm not speaking to {you}.",
            "You told {other} about the {b_prop}? That was between us!",
            "Fine. You want the {b_prop}? Have it. Think of me every time you use it.",
        ),
        "b-escalation": (
            "That's it. I'm taking the {b_prop}, and I'm moving to {faraway}.",
            "I've drawn up a schedule for the {b_prop}. Mondays, Wednesdays and alternate "
            "eclipses are mine.",
            "I want an apology, {you}. In writing. Witnessed by {boss}.",
        ),
        "cold": (
            "Has anyone seen the {runner_prop}? It was right here a second ago.",
            "Quick question. Why does the {runner_prop} keep turning up in my things?",
            "Nobody touch the {runner_prop}. I mean it. Something's not right with it.",
        ),
        "tag": (
            "So we all agree: nobody touches the {runner_prop} ever again.",
            "Well. I think we all learned something today about the {runner_prop}.",
            "I'm putting the {runner_prop} somewhere nobody will ever find it.",
        ),
    }
)
PUSHES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "A": (
            "All I need is the {prop} and ten minutes before {boss} gets back.",
            "Think about it, {you}: {event}, and us right in the middle of it.",
            "If this works, we'll never have to eat {food} again.",
            "I just need you to distract {boss}. Talk about the weather. Talk about {hazard}.",
        ),
        "B": (
            "It's not about the {b_prop}. It's about respect. And also the {b_prop}.",
            "You can't borrow a person's {b_prop} and bring it back smelling of {food}.",
            "Admit it, {you}. Just once. Say 'I was wrong about the {b_prop}.'",
        ),
    }
)
TURNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "A": (
            "Then we do it at {event}, in front of everybody. Nobody looks for a scheme in "
            "plain sight.",
            "New plan. We need {other}, the {b_prop} and a very good reason to be at {place} "
            "after dark.",
            "Fine. But if this goes wrong, I was never here, and neither were you.",
            "All right. We tell {boss} the truth. A version of the truth. The truth's cousin.",
        ),
        "B": (
            "Fine. You want war? You've got war. Polite, quiet, passive-aggressive war.",
            "Then I'll prove it. In front of witnesses. Preferably at {event}.",
            "Let's settle this like grown-ups. Best of three.",
        ),
        "climax": (
            "Wait. If the {prop} is here, then what is {boss} holding?",
            "Everybody calm down. Nobody move. Somebody grab the {prop}.",
        ),
        "runner": (
            "Somebody hide the {runner_prop} before {boss} sees it. Not there. Not THERE!",
            "Just put it down, {you}. Slowly. Nobody has to get hurt.",
        ),
    }
)
REACTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "schemer": (
            "Leave it to me. I have a plan, and for once it barely involves a disguise.",
            "Oh, this is perfect. This is the best terrible news I've had all week.",
            "Now you're talking. Get me the {focus}, a cover story and five minutes.",
        ),
        "straight man": (
            "{you}, there is no version of this where {boss} doesn't find out.",
            "Every time you say 'it's simple', I lose a week of my life.",
            "I'm going to count to ten, and when I open my eyes this will have been a dream.",
        ),
        "sidekick": (
            "I'm in. What are we doing? Actually, don't tell me. I'm in.",
            "Why is it always me holding the {focus} when the shouting starts?",
            "Do I get a disguise this time? Last time I didn't get a disguise.",
        ),
        "blowhard": (
            "Do you know who you're talking to? I am a {my_role}!",
            "Leave this to a professional. Stand back. Further. Further than that.",
            "In my day we handled this sort of thing with a firm word and a louder voice.",
        ),
        "neurotic": (
            "Oh, that's great. Now I'll be up all night thinking about the {focus}.",
            "Is it hot in here? It's hot in here. Is it me? It's me, isn't it?",
            "I'm fine. I'm totally fine. Why is everyone looking at me like I'm not fine?",
        ),
        "innocent": (
            "Ooh! Is this the kind of secret where I nod, or the kind where I leave?",
            "I don't understand any of this, but I'm very excited.",
            "Is this a good surprise or a bad surprise? My face needs to know.",
        ),
        "cynic": (
            "Wake me when it's over. Or when it catches fire. Whichever comes first.",
            "I've seen better plans drawn in {food}.",
            "Sure. What's one more disaster? I'll add it to the collection.",
        ),
        "romantic": (
            "You know what this needs? Candlelight. Everything goes better with candlelight.",
            "Oh, {you}, you're magnificent when you're desperate.",
            "This is the most exciting thing that's happened to me since lunch.",
        ),
        "eccentric": (
            "Interesting. The {vocab} told me this would happen. I didn't believe it either.",
            "I can help! I've trained for this exact situation. Not on purpose.",
            "Funny you should mention it. I dreamt about the {focus} last night. It was taller.",
        ),
        "authority": (
            "Not on my watch. Not while I'm {my_role} around here.",
            "I'm going to pretend I didn't hear that, and then I'm going to write it down.",
            "Everybody calm down. I'm in charge, and we will panic in an orderly fashion.",
        ),
        "snob": (
            "I refuse to be involved in anything that involves {food}.",
            "How tremendously provincial. Count me in, but ironically.",
            "I'll help, on the condition that nobody ever finds out I helped.",
        ),
    }
)
OBJECTIONS = (
    "No. Absolutely not. The last time you said that, we lost the {vehicle}.",
    "And what happens when {boss} walks in?",
    "Can I point out that nobody asked for this? Nobody. I checked.",
    "There's a reason nobody at {place} has tried this before, {you}.",
    "You know exactly what {other} is going to say.",
    "Fine. But when this goes wrong, I want it noted that I said so first.",
    "Oh, sure. And then we all move to {faraway} and live on {food}.",
    "Do you ever listen to yourself? I do. It's exhausting.",
    "Let the record show that I was the sensible one.",
    "That's the worst idea I've heard since the last one you had.",
    "Absolutely not. I have a reputation. It's not a good one, but it's mine.",
    "Can we not? Just this once, can we not?",
    "And when {boss} asks, what exactly do I say? 'Oops'?",
    "I'd love to help. I'd also love to keep my job.",
    "You've clearly thought about this for almost a whole minute.",
    "Every part of that sentence worries me.",
)
BANTER = (
    "What did I miss? Somebody's got that face.",
    "Is this about the {focus}? It's always about the {focus}.",
    "I'm not here. I'm just getting {drink}.",
    "Whatever it is, I'm against it, and I want that noted.",
    "Did somebody say {food}?",
    "I'd like to go on record as having no part in any of this.",
    "Quick question: is the {b_prop} supposed to make that noise?",
    "If anyone asks, I was at {place} all day.",
    "Don't mind me. I'm just here for the {food}.",
    "Is everybody whispering, or have I gone deaf again?",
    "I leave for five minutes and the whole place falls apart.",
    "Nobody tell {boss} I said this, but I agree with whoever's losing.",
    "Sorry, I wasn't listening. Can somebody do the last bit again, but slower?",
    "I came in for {drink} and I'm leaving with a headache.",
    "Should I be worried? I feel like I should be worried.",
    "Oh good, a crisis. I was getting bored.",
    "Has anyone else noticed the {focus} is looking at us?",
    "Is it too late to pretend I'm not involved?",
    "I'm going to need someone to explain this with smaller words.",
    "Whatever this is, can it wait until after {food}?",
)
LEAD_INS = (
    "Well, at least nothing else can go wrong today.",
    "I think we handled that very maturely.",
    "This time I'm sure. Absolutely sure.",
    "Honestly, what's the worst that could happen now?",
    "Nobody panic. I have everything under control.",
    "Let's just try to have one normal day.",
    "What could any of this possibly have to do with me?",
    "I've learned my lesson. I'm a new person.",
)
PARENTHETICALS = (
    "beat",
    "quietly",
    "too quickly",
    "not looking up",
    "sotto",
    "a little too loudly",
    "brightly",
    "through a smile",
    "to {you}",
    "re: the {focus}",
    "mouth full of {food}",
    "hands up",
    "wounded",
)
PUNCH_PARENTHETICALS = ("beat", "deadpan", "without missing a beat", "flat")

# Joke pairs by pattern id: (setup, payoff). For "callback" the first half is a plain lead-in.
JOKES: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {
        "rule-of-three": (
            (
                "{you}, what do we actually need to pull this off?",
                "Three things: nerve, timing, and somebody to blame. That's you, {you}.",
            ),
            (
                "What could possibly go wrong with the {prop}?",
                "{hazard}, {boss}, and you. Mostly you.",
            ),
            (
                "Tell me you at least made a list.",
                "I made a list: courage, discipline, {food}. I got as far as {food}.",
            ),
        ),
        "misunderstanding": (
            (
                "{you}, I know about the {prop}. I've known since this morning.",
                "You know? Oh, thank goodness. Then you won't mind about the {b_prop} either.",
            ),
            (
                "I told {other} everything. I had to. It was eating me alive.",
                "You told {other} about the {food}? I can never show my face at {place} again!",
            ),
            (
                "We need to talk about what happened last night.",
                "The singing? I thought we agreed never to mention the singing.",
            ),
        ),
        "scheme-backfire": (
            (
                "Relax, {you}. Nobody will ever connect us to the {prop}.",
                "Nobody except whoever reads the label with your name on it.",
            ),
            (
                "All we do is swap the {prop} before {boss} gets back. Simple.",
                "Simple. Like last time. When we swapped the {vehicle}.",
            ),
            (
                "The beauty of my plan is that it cannot possibly go wrong.",
                "That's what you said about the {food}. They're still scraping it off the walls.",
            ),
            (
                "I'll just tell {boss} it was {other}'s idea.",
                "{other} is standing right behind you.",
            ),
        ),
        "deadpan": (
            (
                "{oath}! There's {hazard} coming and the {prop} is on fire!",
                "Huh. I'll put it on the list.",
            ),
            (
                "{you}! The {prop} just exploded! There's {food} on the ceiling!",
                "Well. That's dinner sorted.",
            ),
            (
                "Did you hear? {boss} is coming here. Today. To see us!",
                "Great. I'll find my other shirt.",
            ),
            (
                "We've lost everything, {you}. The {money}, the {vehicle}, the {b_prop}.",
                "So lunch is off, then.",
            ),
        ),
        "hyperbole": (
            (
                "How bad can one little complaint from {boss} be?",
                "How bad? {boss} once made a grown {your_role} cry just by reading the minutes.",
            ),
            (
                "Is it really that big a deal? It's just the {prop}.",
                "Just the {prop}? It's the most important invention since {drink}!",
            ),
            (
                "One quick word with {boss}, {you}. What's the worst that could happen?",
                "I'd rather walk to {faraway} barefoot, carrying the {prop}, uphill both ways.",
            ),
        ),
        "reversal": (
            (
                "{you}, can I borrow your {b_prop}? Just for an hour.",
                "Absolutely not. It's a matter of principle. ...Is it a paid hour?",
            ),
            (
                "Promise me you'll stay calm when {boss} gets here.",
                "I am serenity itself. I am a still pond. ...Where is {boss}? Let me at 'em!",
            ),
            (
                "Be honest. Do you even care about {event}?",
                "Me? Please. I'm above all that. ...Does this hat make me look like a winner?",
            ),
        ),
        "callback": (
            (LEAD_INS[0], "Said the person in charge of the {runner_prop}."),
            (LEAD_INS[1], "That's what you said about the {runner_prop}, and look how that went."),
            (
                LEAD_INS[2],
                "Funny. That's what {runner} said right before the {runner_prop} incident.",
            ),
            (LEAD_INS[3], "Two words, {you}: the {runner_prop}."),
            (LEAD_INS[4], "You said that about the {runner_prop}. Twice."),
            (LEAD_INS[5], "Normal. Sure. Has anybody told the {runner_prop}?"),
            (LEAD_INS[6], "Everything, {you}. It always comes back to the {runner_prop}."),
            (LEAD_INS[7], "The new person still has the {runner_prop} in their pocket."),
        ),
        "running-gag": (
            (
                "Why is the {runner_prop} in here again? I put it back this morning.",
                "It likes you, {you}. It follows you around. I think it's imprinted.",
            ),
            (
                "Has anybody seen the {runner_prop}? I've looked everywhere.",
                "Check your pockets. Check {place}. Check behind {boss}. It gets around.",
            ),
            (
                "{you}, please tell me that isn't the {runner_prop}.",
                "It isn't. It's a different {runner_prop}. There are two now.",
            ),
        ),
        "insult-comeback": (
            (
                "{you}, I've met {food} with more personality than you.",
                "And yet the {food} still gets invited to more parties than you, {you}.",
            ),
            (
                "Nice work today, {you}. I've seen {hazard} do less damage.",
                "At least {hazard} has the decency to leave eventually.",
            ),
            (
                "If brains were {money}, {you}, you couldn't afford {drink}.",
                "And if charm were {money}, you'd owe me change.",
            ),
        ),
        "delayed-reaction": (
            (
                "Oh, by the way, {boss} is moving in with us. Pass the {food}?",
                "Here you go. ...Wait. MOVING IN?",
            ),
            (
                "Anyway, I sold the {prop}. Is there any more {drink}?",
                "Top shelf, behind the... you SOLD the {PROP}?",
            ),
            (
                "Little thing: I told {visitor} you're a doctor. What time is it?",
                "About half past... a DOCTOR?",
            ),
        ),
        "literal-minded": (
            (
                "Keep an eye on the {prop} for me, would you?",
                "I did. Both eyes, a full hour. Somebody took it anyway while I watched.",
            ),
            (
                "{boss} says we need to think outside the box.",
                "I tried. I sat outside the box for an hour. Nothing came.",
            ),
            (
                "Could you give me a hand with the {b_prop}?",
                "I'd rather not. I'm using both of them.",
            ),
        ),
        "fish-out-of-water": (
            (
                "Where did you learn to handle a {vehicle} like that?",
                "Nowhere. Back home we just shouted at things until they moved.",
            ),
            (
                "What do you mean you've never had {drink}?",
                "Where I'm from, that's not a drink. It's a punishment.",
            ),
            (
                "You can't pay for {food} with that! We use {money} here.",
                "Then I'll pay in compliments. Your hair is very... present.",
            ),
        ),
        "status-reversal": (
            (
                "{you}, fetch me the {prop}. Now.",
                "Say please. No, like you mean it. ...Now curtsy.",
            ),
            (
                "Since when do you give the orders around here?",
                "Since I found out who broke the {prop}. Sit down.",
            ),
            (
                "I outrank you, {you}, and don't you forget it.",
                "You outrank me. I have the only key to the {drink}. "
                "Let's see how long rank lasts.",
            ),
        ),
        "lie-that-grows": (
            (
                "So where exactly were you last night, {you}?",
                "Visiting my sick aunt. And her twin. Who is also sick. They share a hat.",
            ),
            (
                "You said the {prop} was a gift from {visitor}.",
                "It was. From {visitor} and {boss}. Jointly. They met through me.",
            ),
            (
                "Why would you tell {boss} you speak fluent {vocab}?",
                "Because I nearly do. {other} is teaching me. Don't ask {other}.",
            ),
        ),
        "observational": (
            (
                "Have you ever noticed nobody actually eats the {food}?",
                "Nobody eats it, nobody throws it out. It's not food, it's a roommate.",
            ),
            (
                "Why does the {vehicle} always break down right outside {place}?",
                "Because it knows. It knows we'll have to talk to each other.",
            ),
            (
                "Who decided {drink} was a morning drink?",
                "Somebody who hated mornings and wanted company.",
            ),
        ),
        "self-deprecation": (
            (
                "Come on, {you}, you're the smartest person here.",
                "Thank you. In fairness, I just lost an argument with the {prop}.",
            ),
            (
                "Why would {boss} pick you for {event}?",
                "Honestly? I think it's a punishment. For somebody else.",
            ),
            (
                "You're not still upset about the {b_prop}, are you?",
                "I've been upset since birth. The {b_prop} has to wait its turn.",
            ),
        ),
        "pompous-deflation": (
            (
                "As the only true expert on the {prop}, I shall handle this personally.",
                "You're holding it upside down.",
            ),
            (
                "I'll have you know I was personally commended by {boss}.",
                "For holding a door. You held a door.",
            ),
            (
                "My instincts, {you}, have never once failed me.",
                "Your instincts lost the {vehicle} in a card game.",
            ),
        ),
        "non-sequitur": (
            (
                "This is serious. If {boss} finds the {prop}, we're finished.",
                "Did you know the {b_prop} is older than {boss}? I think about that a lot.",
            ),
            (
                "We have ten minutes before {event}. Focus!",
                "Is it just me, or does {other} look like a tall {food}?",
            ),
            (
                "I need everybody's full attention on the {prop}.",
                "Back home we had a goat that could count to four. Then it stopped. "
                "We never asked.",
            ),
        ),
        "topper": (
            (
                "I once waited six hours for {drink}.",
                "Six hours? I once waited two days for {boss} to say thank you. Still waiting.",
            ),
            (
                "Worst day ever. The {vehicle} broke down twice.",
                "Twice? Mine broke down, caught fire, and was then stolen by {other}.",
            ),
            (
                "I've been to {faraway}, you know.",
                "I was born in {faraway}. Then I left. That's how bad.",
            ),
        ),
        "bait-and-switch": (
            (
                "You've always been there for me, {you}.",
                "And I always will be. Mostly because you owe me {money}.",
            ),
            (
                "You know what I love most about {place}?",
                "The people. The spirit. The fact that {boss} can never find me here.",
            ),
            (
                "I'd give anything to see {other} happy.",
                "Anything within reason. Not the {b_prop}. And not my {food}.",
            ),
        ),
        "echo-twist": (
            (
                "Trust me. I have a plan.",
                "You have a plan. {hazard} has a plan. Nobody likes either.",
            ),
            (
                "I think I handled {boss} beautifully.",
                "Beautifully. The way {hazard} handles a picnic.",
            ),
            (
                "This is going to be the best {event} ever.",
                "The best {event} ever. Said the last three people who organised it.",
            ),
        ),
        "double-entendre": (
            (
                "Would you help me with my {b_prop}? It's been stiff all week.",
                "I'm sure it has, honey. You'll want to see a professional.",
            ),
            (
                "I've never been very good at handling the {vehicle}.",
                "That's not what they say at {place}.",
            ),
            (
                "{boss} says I make the best {food} for miles.",
                "I'll bet {boss} says that to all the cooks.",
            ),
        ),
        "slow-burn": (
            (
                "Sorry, {you}, one more thing: the {prop} is leaking again.",
                "That's fine. That's fine. That is completely... WHO TOUCHED THE {PROP}?",
            ),
            (
                "Also, {boss} wants it tonight. And {other} borrowed your {b_prop}.",
                "Tonight. Fine. Borrowed. Fine. ...WHERE IS {OTHER}?",
            ),
            ("And one last thing. We're out of {drink}.", "Out. Of. {DRINK}?!"),
        ),
        "blurt": (
            (
                "Whatever you do, don't mention the {prop} to {boss}.",
                "The {prop} we broke? That we hid? I wouldn't dream of it.",
            ),
            (
                "Can you keep a secret, {you}?",
                "No. But I can keep it for about an hour, which is nearly the same.",
            ),
            (
                "Nobody knows about the {b_prop} except you and me.",
                "And {other}. And {visitor}. I talk when I'm nervous.",
            ),
        ),
        "slapstick": (
            (
                "Hand me the {prop}, {you}. Carefully. It's heavier than it looks.",
                "I'm fine. The floor broke my fall. And most of my dignity.",
            ),
            (
                "Mind the wet patch by the {b_prop}.",
                "I'm okay! I meant to do that. Floors need testing.",
            ),
            (
                "Steady... steady... I've got it, I've definitely got it...",
                "Nobody move. I'm going to need {other}, some {drink} and a mop.",
            ),
        ),
    }
)

ACTION_OPENINGS = (
    "{A} is elbow-deep in the {focus}; {B} watches, arms folded.",
    "{A} paces. {B} pretends to read, holding the page upside down.",
    "{A} and {B} reach for the last {food} at the same moment. Neither lets go.",
    "{A} bursts in carrying the {focus}. {B} does not look up.",
    "{A} sits very still, the way people do when they have just broken something. {B} notices.",
)
ACTION_BUSINESS = (
    "{X} turns the {focus} over, looking for instructions. There are none.",
    "{X} produces the {other_prop} from somewhere. Nobody asks where.",
    "{X} pours some {drink}, sniffs it, and decides against it.",
    "{X} checks that the door is closed. Then checks again.",
)
ACTION_ENTRANCES = (
    "{X} enters, already mid-complaint, and stops dead at the sight of the {focus}.",
    "{X} slides in with a plate of {food} and an air of total innocence.",
    "The door opens: {X}, who has clearly been listening.",
)
ACTION_REACTIONS = (
    "A long silence. {X} looks at {Y}. {Y} looks at the {focus}.",
    "{X} sinks into the nearest chair.",
    "Everyone turns to look at {X}.",
)
ACTION_CLOSINGS = (
    "{X} exits with as much dignity as the {focus} allows.",
    "On {Y}'s face: pure, distilled dread.",
    "Hold on the {focus}. It makes a small, ominous noise.",
    "{X} and {Y} stare at each other as the lights flicker.",
)
ACTION_SLAPSTICK = (
    "{X} lunges for the {focus}, misses, and takes the shelf down too.",
    "{X} steps back onto something round. The floor arrives quickly.",
    "The {focus} wobbles. {X} steadies it. It wobbles the other way. Gravity wins.",
)
TRANSITIONS = ("CUT TO:", "CUT TO:", "CUT TO:", "SMASH CUT TO:", "DISSOLVE TO:")
LAST_TRANSITION = "FADE OUT."

# Catchphrase words swapped for the setting's lexicon (catalog.LEXICON_KEYS).
CATCHPHRASE_SWAPS: Mapping[str, str] = MappingProxyType(
    {
        "moon": "faraway",
        "coffee": "drink",
        "beer": "drink",
        "martini": "drink",
        "cheesecake": "food",
        "soup": "food",
        "money": "money",
        "bucks": "money",
        "cab": "vehicle",
        "taxi": "vehicle",
        "bus": "vehicle",
        "garage": "place",
        "swamp": "place",
        "apartment": "place",
        "dunder mifflin": "place",
    }
)


# ---------------------------------------------------------------------------------------------
# Determinism helpers


def _digest(*parts: object) -> int:
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _rng(*parts: object) -> random.Random:
    return random.Random(_digest(*parts))


def _sentence(text: str) -> str:
    """Capitalises the first letter and every sentence start (not after an ellipsis), and turns
    'a' into 'an' before a vowel."""
    text = _A_BEFORE_VOWEL.sub("an ", text)
    text = text[:1].upper() + text[1:]
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def _title_case(text: str) -> str:
    words = text.split()
    return " ".join(
        w if i and w.lower() in _SMALL_WORDS else w[:1].upper() + w[1:] for i, w in enumerate(words)
    )


def _mid_sentence(name: str) -> str:
    """'A Mars colony in 2157' -> 'a Mars colony in 2157' (only a leading article is lowered)."""
    first, _, rest = name.partition(" ")
    return f"{first.lower()} {rest}" if first.lower() in ("a", "an", "the") and rest else name


# ---------------------------------------------------------------------------------------------
# Cast


def _name_score(original: str, candidate: str) -> float:
    a, b = original.lower(), candidate.lower()
    score = difflib.SequenceMatcher(None, a, b).ratio()
    return score + 0.15 * (a[-1:] == b[-1:]) + 0.1 * (a[:2] == b[:2])


def _echo_name(
    original: str, pool: Sequence[str], suffixes: Sequence[str], used: set[str], rng: random.Random
) -> str:
    """An in-world name that keeps an echo of the original (same initial, similar sound)."""
    initial = original[:1].lower()
    candidates = [n for n in pool if n[:1].lower() == initial and n.lower() not in used]
    if candidates:
        jitter = {name: rng.random() * 0.05 for name in candidates}
        return max(candidates, key=lambda n: (_name_score(original, n) + jitter[n], n))
    stem = original[:3] if len(original) > 3 else original
    for extra in range(1, 10):
        for suffix in suffixes:
            name = _sentence(stem.lower() + suffix * extra)
            if name.lower() not in used:
                return name
    return f"{original}-{rng.randrange(100, 1000)}"


def _assign_roles(show: Show, profile: SettingProfile) -> list[str]:
    taken: set[str] = set()
    roles = []
    for character in show.characters:
        family = catalog.archetype_family(character.archetype)
        options = [*profile.roles.get(family, ()), *profile.spare_roles]
        role = next((r for r in options if r not in taken), None)
        if role is None:
            role = f"assistant {options[0]}" if options else "regular"
        taken.add(role)
        roles.append(role)
    return roles


def _rename(text: str, renames: Mapping[str, str]) -> str:
    for original, new in renames.items():
        text = re.sub(rf"\b{re.escape(original)}(?:ie|y)?\b", new, text)
    return text


def _swap_words(text: str, lexicon: Mapping[str, str]) -> str:
    """'To the moon, Alice!' on Mars -> 'To Earth, Alice!' (before renaming)."""
    for word, key in CATCHPHRASE_SWAPS.items():
        value = lexicon.get(key)
        if not value:
            continue
        owns_article = value.split()[0].lower() in ("the", "a", "an") or value[:1].isupper()
        pattern = rf"\b(?:(the|this|a|an)\s+)?{re.escape(word)}\b"

        def replace(match: re.Match[str], value: str = value, owns: bool = owns_article) -> str:
            article = match.group(1)
            return value if owns or not article else f"{article} {value}"

        text = re.sub(pattern, replace, text, flags=re.IGNORECASE)
    return text


def transform_cast(
    show: Show, setting: Setting, seed: int
) -> tuple[list[Character], list[Relationship]]:
    """The show's characters renamed and re-roled for the setting, with their relationships.

    The cast depends on the show and the setting only, not on the seed: Lucy is the same person in
    every Mars episode.
    """
    profile = catalog.setting_profile(setting)
    pool, suffixes = catalog.name_pool(profile.name_style)
    rng = _rng("cast", show.id, setting.id, setting.description)
    used = {character.name.lower() for character in show.characters}
    renames: dict[str, str] = {}
    for character in show.characters:
        renames[character.name] = _echo_name(character.name, pool, suffixes, used, rng)
        used.add(renames[character.name].lower())
    cast = [
        Character(
            name=renames[c.name],
            original_name=c.name,
            archetype=c.archetype,
            role=role,
            traits=list(c.traits),
            verbal_tics=[_rename(tic, renames) for tic in c.verbal_tics],
            catchphrases=[
                _rename(_swap_words(p, profile.lexicon), renames) for p in c.catchphrases
            ],
        )
        for c, role in zip(show.characters, _assign_roles(show, profile), strict=True)
    ]
    relationships = [
        Relationship(
            from_character=renames.get(r.from_character, r.from_character),
            to_character=renames.get(r.to_character, r.to_character),
            kind=r.kind,
        )
        for r in show.relationships
    ]
    return cast, relationships


# ---------------------------------------------------------------------------------------------
# The episode kernel: choices shared by the outline and every scene.


@dataclass(frozen=True)
class _Kernel:
    lead: str
    partner: str
    b1: str
    b2: str
    runner: str
    prop: str
    b_prop: str
    runner_prop: str
    want: str
    b_issue: str
    runner_gag: str
    patterns: tuple[str, ...]
    locations: tuple[str, ...]
    slots: Mapping[str, str]


def _pick_runner(cast: Sequence[Character]) -> str:
    for family in ("eccentric", "innocent", "sidekick"):
        for character in cast[2:]:
            if catalog.archetype_family(character.archetype) == family:
                return character.name
    return cast[-1].name


def _props(setting: Setting, rng: random.Random) -> list[str]:
    props = list(dict.fromkeys(setting.props)) or list(GENERIC_PROPS)
    rng.shuffle(props)
    for extra in GENERIC_PROPS:
        if len(props) >= 3:
            break
        if extra not in props:
            props.append(extra)
    return props[:3]


def _favoured_patterns(show: Show, rng: random.Random) -> tuple[str, ...]:
    library = [p.id for p in catalog.load_patterns() if p.id in JOKES]
    favoured = [p for p in show.humor_patterns if p in JOKES] or library
    rng.shuffle(favoured)
    return tuple(favoured)


def _locations(show: Show, setting: Setting, rng: random.Random) -> tuple[str, ...]:
    locations = list(dict.fromkeys(setting.locations)) or list(show.locations) or ["MAIN ROOM"]
    rng.shuffle(locations)
    return tuple(locations)


@lru_cache(maxsize=512)
def _kernel_cached(
    show_bytes: bytes, setting_bytes: bytes, cast_bytes: bytes, seed: int
) -> _Kernel:
    show, setting = Show.FromString(show_bytes), Setting.FromString(setting_bytes)
    cast = list(episode_pb2.Episode.FromString(cast_bytes).cast)
    return _build_kernel(show, setting, cast, seed)


def _kernel(show: Show, setting: Setting, cast: Sequence[Character], seed: int) -> _Kernel:
    if not cast:
        raise ValueError("the cast is empty")
    cast_bytes = episode_pb2.Episode(cast=cast).SerializeToString(deterministic=True)
    return _kernel_cached(
        show.SerializeToString(deterministic=True),
        setting.SerializeToString(deterministic=True),
        cast_bytes,
        seed,
    )


def _build_kernel(show: Show, setting: Setting, cast: Sequence[Character], seed: int) -> _Kernel:
    names = [c.name for c in cast]
    rng = _rng("kernel", show.id, setting.id, setting.description, seed, *names)
    lead = names[0]
    partner = names[1] if len(names) > 1 else lead
    b1 = names[2] if len(names) > 2 else partner
    b2 = names[3] if len(names) > 3 else (partner if b1 != partner else lead)
    prop, b_prop, runner_prop = _props(setting, rng)
    lexicon = dict(catalog.setting_profile(setting).lexicon)
    runner = _pick_runner(cast)
    base = {
        **lexicon,
        "lead": lead,
        "partner": partner,
        "b1": b1,
        "b2": b2,
        "runner": runner,
        "prop": prop,
        "b_prop": b_prop,
        "runner_prop": runner_prop,
    }
    want = rng.choice(WANTS).format_map(base)
    b_issue = rng.choice(B_ISSUES).format_map(base)
    runner_gag = rng.choice(RUNNERS).format_map(base)
    slots = {**base, "want": want, "b_issue": b_issue, "runner_gag": runner_gag}
    slots.update(B_issue=_sentence(b_issue), Prop=_title_case(prop))
    return _Kernel(
        lead=lead,
        partner=partner,
        b1=b1,
        b2=b2,
        runner=runner,
        prop=prop,
        b_prop=b_prop,
        runner_prop=runner_prop,
        want=want,
        b_issue=b_issue,
        runner_gag=runner_gag,
        patterns=_favoured_patterns(show, rng),
        locations=_locations(show, setting, rng),
        slots=MappingProxyType(slots),
    )


# ---------------------------------------------------------------------------------------------
# Outline


def _allocate(structure: episode_pb2.EpisodeStructure, scene_count: int) -> list[tuple[str, int]]:
    """Scenes per act: the acts get at least three, then the tag, then the cold open."""
    act_scenes = min(scene_count, 3)
    rest = scene_count - act_scenes
    tag = 1 if structure.tag and rest > 0 else 0
    rest -= tag
    cold = 1 if structure.cold_open and rest > 0 else 0
    act_scenes += rest - cold
    acts = min(max(1, structure.acts or 2), MAX_ACTS, act_scenes)
    counts = [act_scenes // acts + (1 if i < act_scenes % acts else 0) for i in range(acts)]
    segments = [(COLD_OPEN, 1)] if cold else []
    segments += [(ACT_NAMES[i], count) for i, count in enumerate(counts)]
    return segments + ([(TAG, 1)] if tag else [])


def _plots(segments: Sequence[tuple[str, int]]) -> list[int]:
    """Plot line per scene: runners in cold open and tag; A and B alternate; A has the climax."""
    act_total = sum(count for name, count in segments if name not in (COLD_OPEN, TAG))
    a_line, b_line = episode_pb2.PLOT_LINE_A, episode_pb2.PLOT_LINE_B
    act_plots = [a_line if j % 2 == 0 else b_line for j in range(act_total)]
    if act_total >= 3:
        act_plots[-1] = a_line
    plots: list[int] = []
    for name, count in segments:
        if name in (COLD_OPEN, TAG):
            plots.append(episode_pb2.PLOT_LINE_RUNNER)
        else:
            plots.extend(act_plots[:count])
            act_plots = act_plots[count:]
    return plots


def _stages(plots: Sequence[int]) -> list[str]:
    """Dramatic stage of each scene, from the sequence of plot lines alone."""
    story = [i for i, plot in enumerate(plots) if plot != episode_pb2.PLOT_LINE_RUNNER]
    climax = story[-1] if len(story) >= 2 else -1
    a_beats = [i for i in story if plots[i] == episode_pb2.PLOT_LINE_A and i != climax]
    b_beats = [i for i in story if plots[i] == episode_pb2.PLOT_LINE_B and i != climax]
    stages = []
    for index, plot in enumerate(plots):
        if index == climax:
            stages.append("climax")
        elif plot == episode_pb2.PLOT_LINE_RUNNER:
            stages.append("cold" if not story or index < story[0] else "tag")
        elif plot == episode_pb2.PLOT_LINE_B:
            position = b_beats.index(index)
            stages.append(B_STAGES[position * len(B_STAGES) // len(b_beats)])
        else:
            position = a_beats.index(index)
            stages.append(A_STAGES[position * len(A_STAGES) // len(a_beats)])
    return stages


def write_outline(
    show: Show,
    setting: Setting,
    cast: Sequence[Character],
    relationships: Sequence[Relationship],
    scene_count: int,
    seed: int,
) -> Outline:
    """Title, logline, A and B plots and one beat per scene, acts as the show's structure says."""
    if not 1 <= scene_count <= MAX_SCENES:
        raise ValueError(f"scene_count must be between 1 and {MAX_SCENES} (got {scene_count})")
    kernel = _kernel(show, setting, cast, seed)
    rng = _rng("outline", show.id, setting.id, setting.description, seed)
    segments = _allocate(show.structure, scene_count)
    plots = _plots(segments)
    stages = _stages(plots)
    slots = dict(kernel.slots)
    seen: dict[str, int] = {}
    descriptions = []
    for stage in stages:
        options = BEAT_TEMPLATES[stage]
        offset = _digest("beat", seed, stage) % len(options)
        descriptions.append(options[(offset + seen.get(stage, 0)) % len(options)].format_map(slots))
        seen[stage] = seen.get(stage, 0) + 1
    outline = Outline(
        title=rng.choice(TITLES).format_map(slots),
        logline=_logline(show, setting, cast, kernel),
        a_plot=f"{kernel.lead} sets out to {kernel.want}; {kernel.partner} is against it "
        "from the start.",
        b_plot=_sentence(kernel.b_issue) + ".",
        scene_count=scene_count,
    )
    index = 0
    for name, count in segments:
        act = outline.acts.add(name=name)
        for _ in range(count):
            act.beats.add(scene_index=index, plot=plots[index], description=descriptions[index])
            index += 1
    _note_relationship(outline, relationships, kernel)
    return outline


def _logline(show: Show, setting: Setting, cast: Sequence[Character], kernel: _Kernel) -> str:
    role = cast[0].role or cast[0].archetype or "a dreamer"
    article = "an" if role[:1].lower() in "aeiou" else "a"
    return LOGLINE.format(
        show=show.title,
        setting_lower=_mid_sentence(setting.name or "somewhere new"),
        lead=kernel.lead,
        role=f"{article} {role}",
        want=kernel.want,
        b_issue=kernel.b_issue,
    )


def _note_relationship(
    outline: Outline, relationships: Sequence[Relationship], kernel: _Kernel
) -> None:
    """Names the B-plot pair's relationship in the B plot when the catalog knows it."""
    pair = {kernel.b1, kernel.b2}
    for relationship in relationships:
        if {relationship.from_character, relationship.to_character} == pair:
            outline.b_plot += (
                f" ({relationship.from_character} is {relationship.to_character}'s "
                f"{relationship.kind}.)"
            )
            return


# ---------------------------------------------------------------------------------------------
# Scenes


@dataclass(frozen=True)
class _JokeSpec:
    pattern: str
    role: int


@dataclass
class _Line:
    speaker: str
    text: str
    parenthetical: str = ""
    extension: str = ""
    joke: _JokeSpec | None = None


@dataclass
class _Action:
    text: str


_Item: TypeAlias = _Line | _Action


@dataclass
class _SceneWriter:
    """Builds one scene; every random choice comes from `rng` or a digest of the scene's inputs."""

    show: Show
    setting: Setting
    cast: Mapping[str, Character]
    kernel: _Kernel
    index: int
    seed: int
    rng: random.Random
    items: list[_Item] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    uses: dict[str, int] = field(default_factory=dict)
    tics: dict[str, int] = field(default_factory=dict)
    focus: str = ""
    ordinals: Mapping[str, int] = field(default_factory=dict)

    # -- slots and templates ------------------------------------------------------------------

    def slots(self, me: str, you: str, other: str) -> dict[str, str]:
        vocabulary = list(self.setting.vocabulary) or list(GENERIC_VOCABULARY)
        slots = dict(self.kernel.slots)
        slots.update(
            me=me,
            you=you,
            other=other,
            vocab=self.rng.choice(vocabulary),
            vocab2=self.rng.choice(vocabulary),
            my_role=self._role(me),
            your_role=self._role(you),
            focus=self.focus or slots["prop"],
            other_prop=slots["b_prop"] if self.focus == slots["prop"] else slots["prop"],
        )
        slots.update(
            PROP=slots["prop"].upper(),
            B_PROP=slots["b_prop"].upper(),
            DRINK=slots["drink"].upper(),
            OTHER=other.upper(),
        )
        return slots

    def _role(self, name: str) -> str:
        character = self.cast.get(name)
        return (character.role or character.archetype) if character else "bystander"

    def pick(self, pool_name: str, pool: Sequence[str]) -> Iterable[str]:
        """Templates in an order that rotates from scene to scene, so that consecutive scenes
        (or consecutive scenes of the same plot line) start from different templates."""
        count = self.uses.get(pool_name, 0)
        self.uses[pool_name] = count + 1
        kind = pool_name.split(":", 1)[0]
        if kind in ("push", "turn", "open"):
            position = self.ordinals.get(kind, self.index)
        else:
            stride = next(s for s in range(3, len(pool) + 3) if math.gcd(s, len(pool)) == 1)
            position = self.index * stride
        start = _digest("pool", pool_name, self.seed, self.show.id) + position + count
        return (pool[(start + k) % len(pool)] for k in range(len(pool)))

    def fill(self, pool_name: str, pool: Sequence[str], me: str, you: str, other: str) -> str:
        slots = self.slots(me, you, other)
        for template in self.pick(pool_name, pool):
            text = _sentence(template.format_map(slots))
            if text not in self.used:
                return text
        return self.unique(_sentence(pool[0].format_map(slots)))

    def unique(self, text: str) -> str:
        for tail in ("I mean it.", "Honestly.", "Think about it.", "Again.", "Trust me."):
            if text not in self.used:
                break
            text = f"{text} {tail}"
        return text

    # -- voice -----------------------------------------------------------------------------------

    def voiced(self, speaker: str, text: str) -> str:
        """Adds one of the speaker's verbal tics now and then (at most twice a scene)."""
        character = self.cast.get(speaker)
        if not character or not character.verbal_tics or self.rng.random() >= TIC_CHANCE:
            return text
        if self.tics.get(speaker, 0) >= MAX_TICS_PER_SPEAKER:
            return text
        self.tics[speaker] = self.tics.get(speaker, 0) + 1
        tic = self.rng.choice(list(character.verbal_tics))
        first = text.split(" ", 1)[0].lower().strip(",.!?")
        if tic.endswith(",") and first in _LOWER_STARTERS:
            return f"{tic} {text[:1].lower()}{text[1:]}"
        if tic.endswith(","):
            return f"{tic[:-1]}. {text}"
        return f"{tic} {text}"

    def parenthetical(self, me: str, you: str, punch: bool = False) -> str:
        if self.rng.random() >= PARENTHETICAL_CHANCE:
            return ""
        pool = PUNCH_PARENTHETICALS if punch else PARENTHETICALS
        return self.rng.choice(pool).format_map(self.slots(me, you, you))

    def say(
        self,
        speaker: str,
        text: str,
        you: str,
        joke: _JokeSpec | None = None,
        extension: str = "",
        plain: bool = False,
    ) -> _Line:
        """Appends a line; `plain` lines (catchphrases) get no tic and no parenthetical."""
        if joke is None and not plain:
            text = self.voiced(speaker, text)
        text = self.unique(text)
        self.used.add(text)
        punch = joke is not None and joke.role != episode_pb2.JOKE_ROLE_SETUP
        parenthetical = "" if plain else self.parenthetical(speaker, you, punch)
        line = _Line(speaker, text, parenthetical, extension, joke)
        self.items.append(line)
        return line

    def last_speaker(self) -> str | None:
        """Who spoke the previous element, if it was dialogue."""
        last = self.items[-1] if self.items else None
        return last.speaker if isinstance(last, _Line) else None

    def line(self, pool_name: str, pool: Sequence[str], me: str, you: str, other: str) -> _Line:
        if me == self.last_speaker() and you != me:
            me, you = you, me
        return self.say(me, self.fill(pool_name, pool, me, you, other), you)

    def react(self, me: str, you: str, other: str) -> _Line:
        if me == self.last_speaker() and you != me:
            me, you = you, me
        family = catalog.archetype_family(self._archetype(me))
        return self.line(f"react:{family}", REACTIONS[family], me, you, other)

    def action(self, pool_name: str, pool: Sequence[str], x: str, y: str, prefix: str = "") -> None:
        slots = self.slots(x, y, y)
        template = next(iter(self.pick(pool_name, pool)))
        slots.update(X=x, Y=y, A=x.upper(), B=y.upper())
        text = _sentence(template.format_map(slots))
        self.items.append(_Action(f"{prefix} {text}" if prefix else text))

    # -- jokes -----------------------------------------------------------------------------------

    def joke(self, slot: _JokeSlot, present: Sequence[str]) -> None:
        pattern_id, role = slot.pattern, slot.role
        setup_speaker, punch_speaker = self._joke_speakers(pattern_id, present)
        other = self._other(present, setup_speaker, punch_speaker)
        setup, payoff = self._joke_pair(slot, setup_speaker, punch_speaker, other)
        if role == episode_pb2.JOKE_ROLE_CALLBACK:
            self.say(setup_speaker, setup, punch_speaker)
        else:
            spec = _JokeSpec(pattern_id, episode_pb2.JOKE_ROLE_SETUP)
            self.say(setup_speaker, setup, punch_speaker, joke=spec)
        if pattern_id == "slapstick":
            self.action("slapstick", ACTION_SLAPSTICK, punch_speaker, setup_speaker)
        self.say(punch_speaker, payoff, setup_speaker, joke=_JokeSpec(pattern_id, role))

    def _joke_pair(
        self, slot: _JokeSlot, setup_by: str, punch_by: str, other: str
    ) -> tuple[str, str]:
        pairs = JOKES[slot.pattern]
        setup_slots = self.slots(setup_by, punch_by, other)
        punch_slots = {**setup_slots, **self.slots(punch_by, setup_by, other)}
        punch_slots.update(vocab=setup_slots["vocab"])
        for k in range(len(pairs)):
            setup, payoff = pairs[(slot.pair + k) % len(pairs)]
            first = _sentence(setup.format_map(setup_slots))
            second = _sentence(payoff.format_map(punch_slots))
            if first not in self.used and second not in self.used:
                return first, second
        setup, payoff = pairs[0]
        return _sentence(setup.format_map(setup_slots)), _sentence(payoff.format_map(punch_slots))

    def _joke_speakers(self, pattern_id: str, present: Sequence[str]) -> tuple[str, str]:
        """(setup, payoff) speakers: the payoff goes to an archetype the pattern suits, and
        nobody speaks twice in a row."""
        pattern = catalog.get_pattern(pattern_id)
        suited = pattern.archetypes if pattern else ()
        order = list(present)
        self.rng.shuffle(order)
        fits = [n for n in order if catalog.archetype_family(self._archetype(n)) in suited]
        last = self.last_speaker()
        for punch in [*fits, *(n for n in order if n not in fits)]:
            setups = [n for n in order if n not in (punch, last)]
            if setups:
                return setups[0], punch
        return order[0], order[-1]

    def _archetype(self, name: str) -> str:
        character = self.cast.get(name)
        return character.archetype if character else ""

    def _other(self, present: Sequence[str], *exclude: str) -> str:
        absent = [n for n in self.cast if n not in exclude]
        preferred = [n for n in absent if n not in present] or absent or list(exclude)
        return preferred[_digest("other", self.seed, self.index, *exclude) % len(preferred)]


def _find_beat(outline: Outline, scene_index: int) -> tuple[episode_pb2.Beat | None, str]:
    for act in outline.acts:
        for beat in act.beats:
            if beat.scene_index == scene_index:
                return beat, act.name
    return None, ACT_NAMES[0]


def _participants(
    beat: episode_pb2.Beat | None, cast: Sequence[Character], kernel: _Kernel, stage: str
) -> list[str]:
    """Speakers: the characters the beat names, topped up from the plot's defaults."""
    names = [c.name for c in cast]
    text = beat.description if beat else ""
    found = sorted(
        (match.start(), name)
        for name in names
        if (match := re.search(rf"\b{re.escape(name)}\b", text)) is not None
    )
    speakers = list(dict.fromkeys(name for _, name in found))
    plot = beat.plot if beat else episode_pb2.PLOT_LINE_A
    defaults = {
        episode_pb2.PLOT_LINE_B: [kernel.b1, kernel.b2, kernel.lead],
        episode_pb2.PLOT_LINE_RUNNER: [kernel.runner, kernel.lead, kernel.partner],
    }.get(plot, [kernel.lead, kernel.partner, kernel.b1])
    for name in [*defaults, *names]:
        if len(speakers) >= 3:
            break
        if name not in speakers:
            speakers.append(name)
    limit = 4 if stage == "climax" else 3
    return speakers[:limit]


def _slugline(
    setting: Setting, kernel: _Kernel, scene_index: int, total: int
) -> episode_pb2.Slugline:
    location = kernel.locations[scene_index % len(kernel.locations)]
    profile = catalog.setting_profile(setting)
    exterior = location in profile.exteriors or _EXTERIOR_WORDS.search(location) is not None
    bucket = min(len(TIMES_OF_DAY) - 1, scene_index * len(TIMES_OF_DAY) // max(1, total))
    return episode_pb2.Slugline(
        placement=episode_pb2.PLACEMENT_EXT if exterior else episode_pb2.PLACEMENT_INT,
        location=location,
        time_of_day=TIMES_OF_DAY[bucket],
    )


@dataclass(frozen=True)
class _JokeSlot:
    pattern: str
    pair: int  # index into JOKES[pattern]
    role: int


def _all_stages(outline: Outline, total: int) -> tuple[str, ...]:
    plots = {b.scene_index: b.plot for act in outline.acts for b in act.beats}
    known = sorted(i for i in plots if 0 <= i < total)
    stages = dict(zip(known, _stages([plots[i] for i in known]), strict=True))
    return tuple(stages.get(index, "scheme") for index in range(total))


def _is_callback_button(seed: int, key: str, index: int, stage: str, last: bool) -> bool:
    if index == 0 or stage == "cold":
        return False
    chance = _digest("callback", seed, key, index) % 100 < CALLBACK_CHANCE * 100
    return stage == "tag" or last or chance


def _next_pattern(
    favoured: Sequence[str],
    position: tuple[int, int],
    usage: Mapping[str, int],
    taken: Iterable[str],
    seed: int,
    key: str,
) -> str:
    """The show's favourites in rotation, now and then a library pattern for variety; a pattern
    whose every pair has been used already gives way to the least-used one."""
    index, slot = position
    library = [pattern for pattern in JOKES if pattern != "callback"]
    pattern = favoured[(3 * index + slot) % len(favoured)]
    if _digest("off-library", seed, key, index, slot) % 100 < OFF_LIBRARY_CHANCE * 100:
        pattern = library[_digest("library", seed, key, index, slot) % len(library)]
    blocked = set(taken)
    if pattern not in blocked and usage.get(pattern, 0) < len(JOKES[pattern]):
        return pattern
    candidates = [p for p in library if p not in blocked]
    return min(
        candidates,
        key=lambda p: (usage.get(p, 0), p not in favoured, _digest("tie", seed, key, p)),
    )


@lru_cache(maxsize=256)
def _joke_plan(
    favoured: tuple[str, ...], stages: tuple[str, ...], seed: int, key: str
) -> tuple[tuple[_JokeSlot, ...], ...]:
    """Three joke slots per scene for the whole episode, so that no setup/payoff pair repeats
    until the library runs out. A pure function of the episode's inputs: every scene computes
    the same plan and takes its own row."""
    usage: dict[str, int] = {}
    plan = []
    for index, stage in enumerate(stages):
        first = index == 0 or stage == "cold"
        last = index == len(stages) - 1
        row: list[_JokeSlot] = []
        for slot in range(3):
            taken = [s.pattern for s in row] + (["running-gag"] if first else [])
            if slot == 1 and first:
                pattern = "running-gag"
            elif slot == 2 and _is_callback_button(seed, key, index, stage, last):
                pattern = "callback"
            else:
                pattern = _next_pattern(favoured, (index, slot), usage, taken, seed, key)
            count = usage.get(pattern, 0)
            usage[pattern] = count + 1
            role = episode_pb2.JOKE_ROLE_CALLBACK if pattern == "callback" else PUNCHLINE
            row.append(_JokeSlot(pattern, count % len(JOKES[pattern]), role))
        plan.append(tuple(row))
    return tuple(plan)


def _ordinals(stages: Sequence[str], index: int) -> dict[str, int]:
    """How many earlier scenes share this scene's plot line ('push', 'turn') or stage ('open')."""
    plot = _plot_key(stages[index])
    same_plot = sum(1 for stage in stages[:index] if _plot_key(stage) == plot)
    same_stage = sum(1 for stage in stages[:index] if stage == stages[index])
    return {"push": same_plot, "turn": same_plot, "open": same_stage}


def _focus(kernel: _Kernel, stage: str) -> str:
    """The prop the scene's action revolves around."""
    if stage in ("cold", "tag"):
        return kernel.runner_prop
    return kernel.b_prop if stage in B_STAGES else kernel.prop


def _plot_key(stage: str) -> str:
    if stage in ("cold", "tag"):
        return "runner"
    if stage == "climax":
        return "climax"
    return "B" if stage in B_STAGES else "A"


@dataclass(frozen=True)
class _Frame:
    """Who is in the scene, what it plays and which patterns its three joke slots use."""

    primary: str
    secondary: str
    third: str | None
    stage: str
    plot: str
    jokes: tuple[_JokeSlot, ...]

    @property
    def short(self) -> bool:
        return self.stage in ("cold", "tag")

    @property
    def bystander(self) -> str:
        return self.third or self.secondary


def _write_body(
    writer: _SceneWriter, speakers: list[str], stage: str, jokes: tuple[_JokeSlot, ...]
) -> None:
    frame = _Frame(
        primary=speakers[0],
        secondary=speakers[1] if len(speakers) > 1 else speakers[0],
        third=speakers[2] if len(speakers) > 2 else None,
        stage=stage,
        plot=_plot_key(stage),
        jokes=jokes,
    )
    _write_opening(writer, frame)
    present = _write_middle(writer, frame)
    writer.joke(frame.jokes[2], present)
    writer.action("closing", ACTION_CLOSINGS, frame.primary, frame.secondary)


def _write_opening(writer: _SceneWriter, frame: _Frame) -> None:
    """Establishing action, the beat's opening exchange and the first joke."""
    primary, secondary = frame.primary, frame.secondary
    ambience = next(iter(writer.pick("ambience", catalog.setting_profile(writer.setting).ambience)))
    writer.action("opening", ACTION_OPENINGS, primary, secondary, prefix=ambience)
    writer.line(f"open:{frame.stage}", OPENERS[frame.stage], primary, secondary, frame.bystander)
    writer.react(secondary, primary, frame.third or primary)
    writer.joke(frame.jokes[0], [primary, secondary])
    writer.action("business", ACTION_BUSINESS, primary, secondary)


def _write_middle(writer: _SceneWriter, frame: _Frame) -> list[str]:
    """Stakes, an entrance, banter and the second joke; returns who is now present."""
    primary, secondary = frame.primary, frame.secondary
    if not frame.short:
        pushes = PUSHES["B" if frame.plot == "B" else "A"]
        writer.line(f"push:{frame.plot}", pushes, primary, secondary, frame.bystander)
        writer.line("object", OBJECTIONS, secondary, primary, frame.third or primary)
    present = _enter(writer, frame.third, primary) if frame.third else [primary, secondary]
    _catchphrase(writer, present)
    if frame.short:
        writer.joke(frame.jokes[1], present)
        return present
    for _ in range(writer.rng.randint(0, 1)):
        me = writer.rng.choice(present)
        writer.line("banter", BANTER, me, _someone_else(present, me), secondary)
    writer.joke(frame.jokes[1], present)
    writer.line(f"turn:{frame.plot}", TURNS[frame.plot], primary, secondary, frame.bystander)
    writer.action("reaction", ACTION_REACTIONS, secondary, primary)
    return present


def _someone_else(present: Sequence[str], me: str) -> str:
    return next((name for name in present if name != me), me)


def _enter(writer: _SceneWriter, third: str, primary: str) -> list[str]:
    """Brings the third speaker in, sometimes heard off-screen before being seen."""
    spoken = [item.speaker for item in writer.items if isinstance(item, _Line)]
    if writer.rng.random() < 0.35:
        text = writer.fill("banter", BANTER, third, primary, primary)
        writer.say(third, text, primary, extension="O.S.")
        writer.action("entrance", ACTION_ENTRANCES, third, primary)
    else:
        writer.action("entrance", ACTION_ENTRANCES, third, primary)
        writer.line("banter", BANTER, third, primary, primary)
    return list(dict.fromkeys([*spoken, third]))


def _catchphrase(writer: _SceneWriter, present: Sequence[str]) -> None:
    """At most one catchphrase a scene, in fewer than half the scenes."""
    if writer.rng.random() >= CATCHPHRASE_CHANCE:
        return
    last = writer.last_speaker()
    voiced = [
        n for n in present if n != last and writer.cast.get(n) and writer.cast[n].catchphrases
    ]
    if not voiced:
        return
    speaker = writer.rng.choice(voiced)
    phrase = writer.rng.choice(list(writer.cast[speaker].catchphrases))
    if phrase not in writer.used:
        writer.say(speaker, phrase, _someone_else(present, speaker), plain=True)


def _item_seconds(item: _Item) -> float:
    element = episode_pb2.ScriptElement()
    if isinstance(item, _Line):
        element.dialogue.text = item.text
    else:
        element.action.text = item.text
    return element_seconds(element)


def _is_beat(item: _Item) -> bool:
    return (
        isinstance(item, _Line)
        and item.joke is not None
        and item.joke.role != episode_pb2.JOKE_ROLE_SETUP
    )


def _space_beats(writer: _SceneWriter) -> None:
    """Pads with a line where two comedic beats would land closer than CLUSTER_SECONDS."""
    for _ in range(6):
        clock, last_beat, crowded = 0.0, None, None
        for position, item in enumerate(writer.items):
            clock += _item_seconds(item)
            if not _is_beat(item):
                continue
            if last_beat is not None and clock - last_beat < CLUSTER_SECONDS + 1.0:
                crowded = position
                break
            last_beat = clock
        if crowded is None:
            return
        _pad_before(writer, crowded)


def _pad_before(writer: _SceneWriter, position: int) -> None:
    """Inserts a plain line (or an action) before the crowded beat's setup or lead-in."""
    start = position
    for candidate in range(position - 1, max(-1, position - 4), -1):
        item = writer.items[candidate]
        if isinstance(item, _Line) and (item.joke is None or item.joke.role == SETUP):
            start = candidate
            break
    before, after = writer.items[start - 1] if start else None, writer.items[start]
    spoken = [item.speaker for item in writer.items[:start] if isinstance(item, _Line)]
    neighbours = {item.speaker for item in (before, after) if isinstance(item, _Line)}
    choices = [name for name in dict.fromkeys(spoken) if name not in neighbours]
    if not choices:
        _pad_action(writer, start, spoken)
        return
    me = choices[writer.rng.randrange(len(choices))]
    you = _someone_else(spoken, me)
    pool_name, lines = ("banter", BANTER) if writer.rng.random() < 0.5 else ("object", OBJECTIONS)
    text = writer.unique(writer.voiced(me, writer.fill(pool_name, lines, me, you, you)))
    writer.used.add(text)
    writer.items.insert(start, _Line(me, text))


def _pad_action(writer: _SceneWriter, start: int, spoken: Sequence[str]) -> None:
    """A beat of business where no one can speak without speaking twice in a row."""
    actions = ACTION_REACTIONS if writer.rng.random() < 0.5 else ACTION_BUSINESS
    x, y = [*dict.fromkeys(spoken), *writer.cast][:2]
    slots = writer.slots(x, y, y)
    slots.update(X=x, Y=y)
    template = actions[writer.rng.randrange(len(actions))]
    writer.items.insert(start, _Action(_sentence(template.format_map(slots))))


def _to_elements(
    writer: _SceneWriter, transition: str
) -> tuple[list[episode_pb2.ScriptElement], list[episode_pb2.Joke], float]:
    elements: list[episode_pb2.ScriptElement] = []
    jokes: list[episode_pb2.Joke] = []
    clock = 0.0
    context: list[str] = []
    callback_terms = (writer.kernel.runner_prop,) if writer.index > 0 else ()
    for item in writer.items:
        clock += _item_seconds(item)
        if isinstance(item, _Action):
            elements.append(
                episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text=item.text))
            )
            continue
        dialogue = episode_pb2.DialogueLine(
            character=item.speaker,
            parenthetical=item.parenthetical,
            text=item.text,
            extension=item.extension,
        )
        if item.joke is not None:
            joke_id = f"s{writer.index}-j{len(jokes) + 1}"
            dialogue.joke_id = joke_id
            score, dimensions = score_joke(
                item.text,
                item.joke.pattern,
                speaker=writer.cast.get(item.speaker),
                setting=writer.setting,
                context=context[-6:],
                callback_terms=callback_terms,
            )
            jokes.append(
                episode_pb2.Joke(
                    id=joke_id,
                    scene_index=writer.index,
                    element_index=len(elements),
                    pattern=item.joke.pattern,
                    role=item.joke.role,
                    score=score,
                    dimensions=dimensions,
                    offset_seconds=round(clock, 1),
                )
            )
        context.append(item.text)
        elements.append(episode_pb2.ScriptElement(dialogue=dialogue))
    elements.append(episode_pb2.ScriptElement(transition=episode_pb2.Transition(text=transition)))
    return elements, jokes, clock


def write_scene(
    show: Show,
    setting: Setting,
    cast: Sequence[Character],
    outline: Outline,
    scene_index: int,
    seed: int,
    previous_summaries: list[str] | None = None,
) -> Scene:
    """One scene of the outline, built from its beat alone.

    `previous_summaries` is accepted for parity with the LLM writers; the procedural writer takes
    its continuity (running gag, props, who drives which plot) from the inputs it shares with every
    other scene, so the result never depends on which scenes were written first.
    """
    if scene_index < 0:
        raise ValueError(f"scene_index must be >= 0 (got {scene_index})")
    kernel = _kernel(show, setting, cast, seed)
    beat, act_name = _find_beat(outline, scene_index)
    total = max(outline.scene_count, scene_index + 1)
    stages = _all_stages(outline, total)
    stage = stages[scene_index]
    description = (
        beat.description if beat else kernel.slots["b_issue" if stage in B_STAGES else "want"]
    )
    writer = _SceneWriter(
        show=show,
        setting=setting,
        cast={c.name: c for c in cast},
        kernel=kernel,
        index=scene_index,
        seed=seed,
        rng=_rng("scene", show.id, setting.id, setting.description, seed, scene_index, description),
        focus=_focus(kernel, stage),
        ordinals=_ordinals(stages, scene_index),
    )
    speakers = _participants(beat, cast, kernel, stage)
    last = scene_index == total - 1
    key = f"{show.id}|{setting.id}|{setting.description}"
    plan = _joke_plan(kernel.patterns, stages, seed, key)
    _write_body(writer, speakers, stage, plan[scene_index])
    _space_beats(writer)
    transition = LAST_TRANSITION if last else writer.rng.choice(TRANSITIONS)
    elements, jokes, seconds = _to_elements(writer, transition)
    spoken = [item.speaker for item in writer.items if isinstance(item, _Line)]
    return Scene(
        index=scene_index,
        number=scene_index + 1,
        act=act_name,
        slugline=_slugline(setting, kernel, scene_index, total),
        summary=_sentence(description),
        elements=elements,
        jokes=jokes,
        characters=list(dict.fromkeys(spoken)),
        duration_seconds=round(seconds, 1),
    )


# ---------------------------------------------------------------------------------------------
# Joke scoring

_STOPWORDS = _wordset(
    "a about all am an and any are as at be been but by can could did do does don't for from "
    "get got had has have he her here him his how i i'm if in into is it it's its just let me "
    "more my no not now of oh on one or our out really she so some than that that's the their "
    "them then there they this to too up us very was we well were what when where which who "
    "why will with would you you're your"
)
_WORDS = re.compile(r"[a-z][a-z'\-]*")


def _content_words(text: str) -> list[str]:
    return [w for w in _WORDS.findall(text.lower()) if len(w) > 2 and w not in _STOPWORDS]


def _surprise(text: str, context: Sequence[str]) -> float:
    words = _content_words(text)
    if not words:
        return 0.0
    heard = {w for line in context for w in _content_words(line)}
    novelty = sum(1 for w in words if w not in heard) / len(words)
    return 0.6 * novelty + 0.4 * (words[-1] not in heard)


def _brevity(text: str) -> float:
    count = len(text.split())
    if count < 5:
        return count / 5
    if count <= 16:
        return 1.0
    return max(0.0, 1.0 - (count - 16) / 20)


def _punch(text: str) -> float:
    words = _WORDS.findall(text.lower())
    if not words:
        return 0.0
    last = words[-1]
    if last in _STOPWORDS or len(last) <= 2:
        return 0.2
    return 1.0 if len(last) >= 4 else 0.6


def _character_fit(text: str, pattern: HumorPattern | None, speaker: Character | None) -> float:
    if speaker is None or pattern is None:
        return 0.5
    fit = 1.0 if catalog.archetype_family(speaker.archetype) in pattern.archetypes else 0.4
    lowered = text.lower()
    voiced = any(p.lower() in lowered for p in [*speaker.catchphrases, *speaker.verbal_tics])
    return min(1.0, fit + (0.2 if voiced else 0.0))


@lru_cache(maxsize=128)
def _setting_terms(setting_bytes: bytes) -> tuple[str, ...]:
    setting = Setting.FromString(setting_bytes)
    lexicon = catalog.setting_profile(setting).lexicon.values()
    terms = [*setting.vocabulary, *setting.props, *lexicon]
    cleaned = {re.sub(r"^(the|a|an)\s+", "", term.lower()).strip() for term in terms}
    return tuple(sorted(term for term in cleaned if len(term) > 2))


def _mentions(text: str, terms: Iterable[str]) -> int:
    lowered = text.lower()
    return sum(1 for term in terms if re.search(rf"\b{re.escape(term)}\b", lowered))


def _setting_fit(text: str, setting: Setting | None) -> float:
    if setting is None:
        return 0.5
    hits = _mentions(text, _setting_terms(setting.SerializeToString(deterministic=True)))
    return 1.0 if hits >= 2 else 0.7 if hits == 1 else 0.2


def _callback(text: str, callback_terms: Sequence[str]) -> float:
    terms = [term.lower() for term in callback_terms if term]
    return 1.0 if terms and _mentions(text, terms) else 0.0


def score_joke(
    text: str,
    pattern: HumorPattern | str,
    *,
    speaker: Character | None = None,
    setting: Setting | None = None,
    context: Sequence[str] = (),
    callback_terms: Sequence[str] = (),
) -> tuple[float, dict[str, float]]:
    """Weighted score in [0, 1] and its named dimensions (see JOKE_WEIGHTS); pure.

    `context` is the dialogue heard just before the line; `callback_terms` are things planted
    earlier in the episode that a callback may refer to.
    """
    resolved = pattern if isinstance(pattern, HumorPattern) else catalog.get_pattern(pattern)
    dimensions = {
        "surprise": _surprise(text, context),
        "brevity": _brevity(text),
        "punch": _punch(text),
        "character_fit": _character_fit(text, resolved, speaker),
        "setting_fit": _setting_fit(text, setting),
        "callback": _callback(text, callback_terms),
    }
    score = sum(JOKE_WEIGHTS[name] * value for name, value in dimensions.items())
    return round(score, 4), {name: round(value, 4) for name, value in dimensions.items()}

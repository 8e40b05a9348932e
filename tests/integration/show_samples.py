"""A show made up for the tests (proto3 JSON), shared by the show tests."""

from __future__ import annotations

SHOW_JSON = """{
  "title": "The Quibbles of Quarry Lane",
  "premise": "Bertha Quibble runs a failing bakery with her brother Otto, to the horror of their
 neighbour Mrs. Pruitt.",
  "era": "1962-1968",
  "characters": [
    {"name": "Bertha", "archetype": "schemer",
     "aliases": ["Bertha Quibble", "Quibble", "Miss Quibble", "Bertie"],
     "traits": ["ambitious", "flour on everything"],
     "verbalTics": ["Now look,"], "catchphrases": ["Otto, I have a plan!"]},
    {"name": "Otto", "archetype": "straight man",
     "aliases": ["Otto Quibble", "Mr. Quibble"],
     "verbalTics": ["Bertie, please,"], "catchphrases": ["Not in my bakery, Bertie!"]},
    {"name": "Winifred", "archetype": "snob",
     "aliases": ["Winifred Pruitt", "Pruitt", "Mrs. Pruitt", "Winnie"],
     "catchphrases": ["How very Quibble of you."]},
    {"name": "Angus", "archetype": "eccentric", "aliases": ["Angus McGee", "McGee"],
     "catchphrases": ["Is there cake?"]}
  ],
  "relationships": [
    {"fromCharacter": "Bertha", "toCharacter": "Otto", "kind": "sister"},
    {"fromCharacter": "Winifred", "toCharacter": "Bertha", "kind": "rival"},
    {"fromCharacter": "Angus", "toCharacter": "Otto", "kind": "lodger"}
  ],
  "locations": ["QUIBBLE BAKERY - SHOP FLOOR", "PRUITT PARLOUR", "QUARRY LANE"],
  "humorPatterns": ["scheme-backfire", "slapstick", "insult-comeback", "slow-burn"],
  "structure": {"coldOpen": true, "acts": 2, "tag": true}
}""".replace("\n neighbour", " neighbour")

"""Many more words that are not keywords, for open-set training: espeak-ng speaks any word.

Common English words (none a keyword or a homophone of one: no "for", "to", "won", "ate", "know").
Split by word, not only by voice: the calibration and test voices speak words that training never
heard (every third word), so the rejection rule is measured on unknown words, not memorised ones.
"""

from __future__ import annotations

from typing import Final

EXTRA_UNKNOWN_WORDS: Final = (
    "about", "above", "across", "act", "add", "after", "again", "against", "age", "ago", "agree",
    "air", "all", "almost", "alone", "along", "already", "also", "always", "among", "and", "animal",
    "answer", "any", "apple", "area", "arm", "army", "around", "art", "ask", "away", "baby", "back",
    "bad", "ball", "bank", "base", "be", "bear", "beat", "beautiful", "because", "become", "been",
    "before", "began", "begin", "behind", "believe", "bell", "best", "better", "between", "big",
    "bill", "black", "blood", "blue", "board", "boat", "body", "bone", "book", "born", "both",
    "bottom", "box", "boy", "bread", "break", "bright", "bring", "brother", "brown", "build",
    "burn", "busy", "but", "buy", "by", "call", "came", "camp", "can", "capital", "captain", "car",
    "card", "care", "carry", "case", "catch", "caught", "cause", "cell", "center", "chair",
    "chance", "change", "character", "charge", "check", "chief", "child", "choose", "church",
    "city", "claim", "class", "clean", "clear", "climb", "clock", "cloud", "coast", "coat", "cold",
    "color", "come", "common", "company", "complete", "condition", "consider", "contain", "control",
    "cook", "cool", "copy", "corn", "corner", "cost", "cotton", "could", "count", "country",
    "course", "cover", "cow", "create", "crop", "cross", "crowd", "cry", "current", "cut", "dance",
    "dark", "day", "dead", "deal", "dear", "death", "decide", "deep", "degree", "depend",
    "describe", "desert", "design", "detail", "develop", "die", "different", "difficult", "dinner",
    "direct", "discuss", "distant", "divide", "doctor", "does", "done", "double", "draw", "dream",
    "dress", "drink", "drive", "drop", "dry", "duck", "during", "dust", "duty", "each", "ear",
    "early", "earth", "east", "easy", "eat", "edge", "effect", "egg", "else", "end", "enemy",
    "energy", "engine", "enough", "enter", "equal", "even", "evening", "event", "ever", "every",
    "exact", "example", "except", "exercise", "expect", "experience", "eye", "face", "fact", "fair",
    "fall", "family", "famous", "far", "farm", "fast", "father", "fear", "feel", "feet", "fell",
    "few", "field", "fight", "figure", "fill", "final", "find", "finger", "finish", "fire", "first",
    "fish", "flat", "floor", "flower", "fly", "food", "foot", "force", "forest", "form", "found",
    "fresh", "friend", "from", "front", "fruit", "full", "game", "garden", "gas", "gather", "gave",
    "general", "gentle", "get", "gift", "girl", "give", "glad", "glass", "gold", "gone", "good",
    "got", "govern", "grand", "grass", "gray", "great", "green", "ground", "group", "grow", "guess",
    "guide", "gun", "hair", "half", "hand", "happen", "hard", "has", "hat", "have", "he", "head",
    "hear", "heart", "heat", "heavy", "held", "help", "her", "here", "high", "hill", "him", "his",
    "history", "hit", "home", "hope", "horse", "hot", "hour", "how", "huge", "human", "hunt",
    "hurry", "ice", "idea", "if", "inch", "include", "indeed", "iron", "island", "it", "job",
    "join", "joy", "judge", "jump", "just", "keep", "kept", "key", "kill", "kind", "king", "knew",
    "lady", "lake", "land", "language", "large", "last", "late", "laugh", "law", "lay", "lead",
    "leave", "led", "leg", "less", "let", "letter", "level", "lie", "life", "lift", "like", "line",
    "list", "listen", "little", "live", "long", "look", "lost", "lot", "loud", "love", "low",
    "machine", "made", "magnet", "main", "major", "make", "man", "many", "map", "mark", "market",
    "mass", "master", "match", "matter", "may", "me", "mean", "measure", "meat", "meet", "melody",
    "metal", "method", "middle", "might", "mile", "milk", "mind", "minute", "miss", "modern",
    "moment", "money", "month", "moon", "more", "morning", "most", "mother", "motion", "mountain",
    "mouth", "move", "much", "must", "my", "name", "nation", "nature", "near", "neck", "need",
    "never", "new", "noise", "noon", "north", "nose", "note", "noun", "now", "number", "object",
    "ocean", "of", "office", "oil", "old", "only", "order", "other", "our", "out", "over", "own",
    "page", "paint", "pair", "paper", "park", "part", "party", "pass", "past", "path", "pattern",
    "pay", "people", "perhaps", "person", "picture", "piece", "place", "plain", "plan", "plane",
    "plant", "play", "please", "plural", "poem", "point", "poor", "popular", "position", "possible",
    "pound", "power", "practice", "prepare", "present", "press", "pretty", "print", "probable",
    "problem", "process", "produce", "product", "proper", "protect", "proud", "prove", "pull",
    "push", "put", "question", "quick", "quiet", "quite", "race", "radio", "rain", "raise", "ran",
    "reach", "read", "ready", "real", "reason", "red", "region", "remember", "repeat", "reply",
    "rest", "result", "rich", "ride", "ring", "river", "road", "rock", "roll", "room", "root",
    "rope", "rose", "round", "row", "rule", "run", "safe", "said", "sail", "salt", "same", "sand",
    "sat", "save", "saw", "say", "scale", "school", "science", "score", "sea", "search", "season",
    "seat", "second", "see", "seed", "seem", "segment", "select", "self", "sell", "send", "sense",
    "sent", "serve", "set", "settle", "shall", "shape", "share", "sharp", "she", "sheet", "shell",
    "shine", "ship", "shoe", "shop", "shore", "short", "should", "shoulder", "shout", "show",
    "side", "sight", "sign", "silent", "silver", "simple", "since", "sing", "single", "sister",
    "sit", "size", "skill", "skin", "sky", "sleep", "slow", "small", "smell", "smile", "snow",
    "soft", "soil", "soldier", "solve", "some", "son", "song", "soon", "sound", "south", "space",
    "speak", "special", "speech", "speed", "spell", "spend", "spot", "spread", "spring", "square",
    "stand", "star", "start", "state", "station", "stay", "stead", "steam", "steel", "step",
    "stick", "still", "stone", "store", "story", "straight", "strange", "stream", "street",
    "string", "strong", "student", "study", "subject", "success", "such", "sudden", "sugar", "suit",
    "summer", "sun", "supply", "support", "sure", "surface", "surprise", "swim", "symbol", "system",
    "table", "tail", "take", "talk", "tall", "teach", "team", "teeth", "tell", "temperature",
    "term", "test", "than", "thank", "that", "the", "their", "them", "then", "there", "these",
    "they", "thick", "thin", "thing", "think", "this", "those", "though", "thought", "thousand",
    "through", "throw", "thus", "tie", "time", "tiny", "tire", "together", "told", "tone", "took",
    "tool", "top", "total", "touch", "toward", "town", "track", "trade", "train", "travel", "trip",
    "trouble", "truck", "true", "try", "tube", "turn", "type", "uncle", "under", "unit", "until",
    "use", "usual", "valley", "value", "very", "village", "visit", "voice", "vowel", "walk", "wall",
    "want", "war", "warm", "was", "wash", "watch", "wave", "way", "we", "wear", "weather", "week",
    "weight", "well", "went", "were", "west", "what", "wheel", "when", "where", "which", "while",
    "white", "who", "whole", "why", "wide", "wife", "wild", "will", "win", "wind", "winter", "wire",
    "wish", "with", "woman", "wonder", "wood", "word", "work", "world", "would", "write", "wrong",
    "yard", "year", "yellow", "you", "young",
)  # fmt: skip


def extra_words(split: str) -> tuple[str, ...]:
    """Training hears two words in three; calibration and test hear only the other third."""
    held = split != "train"
    return tuple(w for i, w in enumerate(EXTRA_UNKNOWN_WORDS) if (i % 3 == 0) == held)

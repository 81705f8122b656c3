"""Item categories and tags derived from product descriptions by ordered keyword rules.

Gift-ware catalogues such as UCI Online Retail carry no category, only a short upper-case
description ("WHITE HANGING HEART T-LIGHT HOLDER"). These tables turn the words of a description
into one category and a few tags. They are plain data, read top to bottom:

- categories: the **first** rule with a keyword present in the description wins; a description
  with no keyword of any rule is ``"other"``. Order encodes precedence: seasonal ranges first
  (a "CHRISTMAS GIFT BAG" belongs to christmas), then specific product kinds before broad ones
  (a "CAKE TIN" is kitchen & dining before a "TIN" is storage).
- tags: every rule with a keyword present adds its tag (several tags per item are normal).

A keyword matches whole words only (regex word boundaries), case-insensitively; plural and
abbreviated spellings found in the data are listed explicitly (``"NECKLACE", "NECKLACES",
"NECKL"``). Hyphens and other punctuation separate words, so ``LIGHT`` matches "T-LIGHT".
"""

from __future__ import annotations

import re

import polars as pl

from feature_store.importers.common import first_match

#: Category of descriptions no rule matches.
OTHER = "other"

#: (category, keywords), first match wins.
# fmt: off
CATEGORY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Phrases whose words would otherwise hit a broader rule of another category first.
    ("kitchen & dining", (
        "NAPKIN RING", "NAPKIN RINGS", "WASHING UP GLOVES", "CAKE CASES", "BAKING CASES",
        "PETIT FOUR", "EGG CUP", "EGG CUPS",
    )),
    ("home decor", (
        "HOT WATER BOTTLE", "DRAWER KNOB", "UMBRELLA STAND", "WALL ART", "DOORSTOP",
    )),
    ("garden", ("KNEELING PAD", "PLANT POT", "FLOWER POT", "POTTING", "HAMMOCK")),
    ("toys & kids", ("SWIRLY MARBLES", "SKITTLES", "MAGIC DRAWING SLATE", "PLAYING CARDS")),
    # Product kinds, seasonal ranges first.
    ("christmas", (
        "CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "NATIVITY", "SNOWFLAKE",
        "SNOWFLAKES", "SNOWMAN", "BAUBLE", "BAUBLES", "TINSEL", "ELF", "JINGLE",
    )),
    ("easter & party", (
        "EASTER", "PARTY", "BIRTHDAY", "BALLOON", "BALLOONS", "BUNTING", "CONFETTI",
        "HALLOWEEN", "CELEBRATION", "CRACKER", "CRACKERS", "VALENTINE",
    )),
    ("candles & lights", (
        "CANDLE", "CANDLES", "CANDLEHOLDER", "CANDLESTICK", "CANDLEPOT", "T-LIGHT", "TLIGHT",
        "LIGHT", "LIGHTS", "LANTERN", "LANTERNS", "MATCHES", "LAMP", "LAMPSHADE", "LAMPS",
        "INCENSE", "VOTIVE", "NIGHTLIGHT", "CHANDELIER", "TEALIGHT", "TEALIGHTS", "OIL BURNER",
        "FRAGRANCE", "DIFFUSER",
    )),
    ("jewellery & accessories", (
        "NECKLACE", "NECKLACES", "NECKL", "NECKLAC", "BRACELET", "BRACELETS", "EARRINGS",
        "EARRING", "RING", "RINGS", "PENDANT", "CHARM", "CHARMS", "BROOCH", "HAIR", "HAIRCLIP",
        "HAIRBAND", "HAIRSLIDE", "DIAMANTE", "JEWEL", "JEWELLED", "JEWELLERY", "BEADS",
        "BEADED", "BEAD", "BANGLE", "PURSE", "WALLET", "UMBRELLA", "SCARF", "GLOVES",
        "HANDBAG", "SUNGLASSES", "COMPACT", "CUFFLINKS", "TIARA", "KEYRING", "KEY RING",
        "PASSPORT COVER", "CARD HOLDER", "LUGGAGE TAG", "HAT", "SLIPPERS", "WATCH",
    )),
    ("bags", (
        "BAG", "BAGS", "BACKPACK", "RUCKSACK", "SHOPPER", "TOTE", "SATCHEL", "HOLDALL",
        "WASHBAG", "SHOULDER BAG",
    )),
    ("toys & kids", (
        "TOY", "TOYS", "DOLL", "DOLLS", "JIGSAW", "PUZZLE", "PUZZLES", "GAME", "GAMES",
        "CHILDRENS", "CHILDS", "CHILD", "KIDS", "BABY", "SPACEBOY", "DINOSAUR", "DINOSAURS",
        "TEDDY", "SKIPPING", "CRAYONS", "COLOURING", "FELTCRAFT", "SOLDIERS", "SOLDIER",
        "PLAYHOUSE", "SPINNING TOP", "MARBLES", "YO-YO", "KNITTING", "DOMINOES", "BINGO",
        "STENCIL", "SCOOTER", "WATERING CAN KIDS", "PAINT SET", "BOOMERANG", "KITE", "RATTLE",
        "PUPPET", "HELICOPTER", "INFLATABLE", "BADGES", "TATTOOS", "MODELLING", "LADDERS",
        "NAUGHTS", "FLYING DISC", "SPINNING TOPS", "MONSTER",
    )),
    ("kitchen & dining", (
        "MUG", "MUGS", "CUP", "CUPS", "SAUCER", "SAUCERS", "PLATE", "PLATES", "BOWL", "BOWLS",
        "CUTLERY", "TEA", "TEAPOT", "COFFEE", "CAKE", "CAKES", "CAKESTAND", "CUPCAKE",
        "BAKING", "JAR", "JARS", "TRAY", "TRAYS", "PAN", "JUG", "BEAKER", "BEAKERS", "NAPKIN",
        "NAPKINS", "COASTER", "COASTERS", "DISH", "DISHES", "LUNCH", "SPOON", "SPOONS", "FORK",
        "KNIFE", "KITCHEN", "PANTRY", "APRON", "OVEN", "GLOVE", "EGG", "TEATIME", "BREAKFAST",
        "DINNER", "PICNIC", "SNACK", "BISCUIT", "SUGAR", "MILK", "JAM", "RECIPE", "CHOPSTICKS",
        "TOWEL", "TOWELS", "TUMBLER", "TUMBLERS", "GLASSES", "BOTTLE", "DRINKS", "CAFETIERE",
        "CHOPPING", "BREAD", "BUTTER", "SALT", "PEPPER", "STRAWS", "SCALES",
        "TIMER", "COOKIE", "CUTTER", "CUTTERS", "COLANDER", "TEACUP", "TEASPOONS", "PLACEMATS",
        "PLACEMAT", "DOILY", "DOILIES", "DOILEY", "TABLECLOTH", "ICE", "LOLLY", "MOULD",
        "MOULDS", "FOOD", "PARTY CUPS", "FLASK", "CHOCOLATE", "SWEETS", "TEATOWEL", "WINE",
        "CHAMPAGNE", "DRINK", "JELLY", "POPCORN", "GRINDER", "PLATTER", "FRUITBOWL",
        "TOASTRACK", "SQUEEZER",
    )),
    ("stationery & wrap", (
        "CARD", "CARDS", "WRAP", "WRAPPING", "PAPER", "NOTEBOOK", "NOTEBOOKS", "NOTEPAD", "PEN",
        "PENS", "PENCIL", "PENCILS", "STICKER", "STICKERS", "TAPE", "ENVELOPE", "ENVELOPES",
        "SKETCHBOOK", "ERASER", "ERASERS", "RIBBON", "RIBBONS", "TISSUE", "TISSUES", "TAG",
        "TAGS", "CALENDAR", "BOOK", "BOOKS", "JOURNAL", "DIARY", "MEMO", "LABELS", "STAMP",
        "STAMPS", "RUBBER", "RULER", "SHARPENER", "CRAFT", "STATIONERY", "PAD", "GIFTWRAP",
        "INVITES", "INVITATIONS", "SCISSORS", "GLITTER", "CHALK", "MARKER", "CLIPS",
        "BOOKMARK", "ALBUM", "ORIGAMI", "LETTER", "POSTCARD", "GREETING", "WRITING", "NOTELETS",
        "WRAPS", "MEMOBOARD", "SCISSOR", "SEWING", "NEEDLE",
    )),
    ("garden", (
        "GARDEN", "PLANT", "PLANTER", "PLANTERS", "WATERING", "FLOWERPOT", "HERB", "HERBS",
        "SEED", "SEEDS", "TRELLIS", "GNOME", "SPADE", "TROWEL", "OUTDOOR", "BIRD", "BIRDS",
        "BIRDHOUSE", "FEEDER", "PARASOL", "GREENHOUSE", "BUCKET", "WHEELBARROW", "WINDMILL",
        "HEN HOUSE", "BIRDBATH", "GROW", "TOADSTOOL", "TOADSTOOLS", "MUSHROOM", "THERMOMETER",
    )),
    ("storage", (
        "BOX", "BOXES", "TIN", "TINS", "BASKET", "BASKETS", "STORAGE", "CASE", "CASES",
        "CONTAINER", "CONTAINERS", "HAMPER", "CRATE", "TRUNK", "BIN", "CHEST", "TIDY",
        "DRAWER", "DRAWERS", "CABINET", "CADDY", "TRINKET", "ORGANISER", "ORGANIZER", "CRATES",
        "HOLDER", "POUCH", "SACK", "CANISTER", "CANISTERS", "WASTEPAPER",
    )),
    ("home decor", (
        "CUSHION", "CUSHIONS", "COVER", "MIRROR", "MIRRORED", "FRAME", "FRAMES", "CLOCK",
        "SIGN", "SIGNS", "DOORMAT", "HOOK", "HOOKS", "HANGER", "HANGERS", "WALL", "DOORSTOP",
        "KNOB", "KNOBS", "VASE", "ORNAMENT", "ORNAMENTS", "DECORATION", "DECORATIONS",
        "GARLAND", "WREATH", "HANGING", "PICTURE", "ART", "PHOTO", "CURTAIN", "THROW",
        "BLANKET", "QUILT", "HOT WATER BOTTLE", "SHELF", "TABLE", "CHAIR", "STOOL", "RACK",
        "MOBILE", "FLAG", "COAT", "BATHROOM", "SOAP", "BATH", "DOOR", "PLAQUE", "TILE",
        "TILES", "MAGNET", "MAGNETS", "BELL", "BELLS", "CHIME", "CHIMES", "FEATHER", "FLOWERS",
        "FLOWER", "ROSE", "ROSES", "STAND", "LETTERS", "ALPHABET", "BUNNY", "RABBIT", "HEART",
        "HEARTS", "STAR", "STARS", "DECORATIVE", "DRAUGHT EXCLUDER", "PLANT POT", "WARMER",
        "PAPERWEIGHT", "SCULPTURE", "FIGURE", "DOORKNOB", "WASHROOM",
        "LAVENDER", "SCENTED", "SACHET", "ROBOT", "CHALKBOARD", "BLACKBOARD", "NUMBER",
        "HOME", "SWEETHEART", "POUFFE", "ASHTRAY", "FLYING DUCKS",
    )),
)


#: (tag, keywords); every matching rule adds its tag.
TAG_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("christmas", ("CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "NATIVITY", "SNOWFLAKE",
                   "SNOWMAN", "BAUBLE", "TINSEL", "JINGLE")),
    ("easter", ("EASTER", "CHICK", "CHICKS", "BUNNY")),
    ("vintage", ("VINTAGE", "RETRO", "ANTIQUE", "VICTORIAN", "EDWARDIAN", "REGENCY", "BAROQUE",
                 "FRENCH", "ENGLISH", "CLASSIC", "OLD", "TRADITIONAL")),
    ("heart", ("HEART", "HEARTS", "SWEETHEART", "LOVE")),
    ("kids", ("CHILDRENS", "CHILDS", "CHILD", "KIDS", "BABY", "SPACEBOY", "DOLLY", "TOY",
              "TOYS", "DINOSAUR", "TEDDY", "BOYS", "GIRLS", "BOY", "GIRL")),
    ("set", ("SET", "SETS", "PACK", "PACKS", "KIT")),
    ("floral", ("FLOWER", "FLOWERS", "FLORAL", "ROSE", "ROSES", "DAISY", "BLOSSOM", "BOTANICAL",
                "PAISLEY", "LAVENDER", "TULIP", "POPPY", "POPPIES", "ROSIE")),
    ("spots", ("RETROSPOT", "POLKADOT", "SPOT", "SPOTS", "SPOTTY", "DOTS")),
    ("party", ("PARTY", "BIRTHDAY", "BUNTING", "BALLOON", "BALLOONS")),
)
# fmt: on


#: "LIGHT PINK", "LIGHT BLUE" ... name a colour, not a light: the word is dropped before matching.
_LIGHT_COLOUR = (
    r"(?i)\bLIGHT\s+(PINK|BLUE|GREEN|PURPLE|BROWN|GREY|GRAY|YELLOW|RED|ORANGE|"
    r"IVORY|GOLD|SILVER|TURQUOISE|LILAC|CREAM|BLACK|WHITE)\b"
)


def _pattern(keywords: tuple[str, ...]) -> str:
    words = "|".join(re.escape(k).replace(r"\ ", r"\s+") for k in keywords)
    return rf"(?i)\b(?:{words})\b"


def _text(description: pl.Expr) -> pl.Expr:
    return description.fill_null("").str.replace_all(_LIGHT_COLOUR, "${1}")


def category_expr(description: pl.Expr) -> pl.Expr:
    """Category of each description: the first matching rule, ``other`` when none (or null)."""
    text = _text(description)
    cases = [
        (text.str.contains(_pattern(keywords)), pl.lit(category))
        for category, keywords in CATEGORY_RULES
    ]
    return first_match(cases, pl.lit(OTHER))


def tags_expr(description: pl.Expr) -> pl.Expr:
    """Tags of each description in rule order (an empty list when none match)."""
    text = _text(description)
    parts = [
        pl.when(text.str.contains(_pattern(keywords))).then(pl.lit(tag)).otherwise(None)
        for tag, keywords in TAG_RULES
    ]
    return pl.concat_list(parts).list.drop_nulls()


def categories() -> tuple[str, ...]:
    """Every category the rules can give, in first-appearance order, then ``other``."""
    seen = dict.fromkeys(c for c, _ in CATEGORY_RULES)
    return (*seen, OTHER)

"""Import UCI Online Retail (541,909 invoice lines, 2010-12 to 2011-12) as a canonical dataset.

Source columns: InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
Country (CSV, CSV.gz or Parquet). Each line becomes one purchase row or is rejected by the first
rule it breaks, in this order (docs/data_import.md explains each choice):

1. unreadable quantity / unit price / invoice date (none in the published file);
2. missing customer id; missing stock code; malformed customer id;
3. not a sale or cancellation invoice (``A...`` bad-debt adjustments);
4. non-product code: <kind> (postage, manual entries, discounts, fees, vouchers, ...);
5. zero quantity; non-positive unit price;
6. stock adjustment: negative quantity on a sale invoice; positive quantity on a cancellation;
7. exact duplicate (all eight cells equal an earlier line); duplicate purchase (equal to an
   earlier line in every canonical value, differing only in description, country or code case).

Kept lines: order_id = InvoiceNo (a cancellation keeps its ``C`` invoice as its own order),
member_id = CustomerID, item_id = StockCode upper-cased, ts = InvoiceDate, quantity = Quantity
(negative for cancellations), amount = Quantity * UnitPrice rounded to 4 decimals.
Members: every customer id of the source (joined_at = first invoice time, region = most frequent
country). Items: every product code with a positive price (title = most frequent description,
price = median positive unit price, category and tags from description keywords).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from feature_store.dataset import Dataset, Format
from feature_store.importers.common import (
    ImportReport,
    ImportResult,
    Progress,
    Rule,
    SourceRows,
    apply_rules,
    check_accounted,
    counts_by_reason,
    first_match,
    purchase_counts,
    read_source,
    split_rejects,
    write_import,
)
from feature_store.importers.keywords import OTHER, categories, category_expr, tags_expr
from feature_store.schema import ITEMS, MEMBERS, PURCHASES, Col, conform

IMPORTER = "online-retail"


class Src:
    """Source column names."""

    INVOICE = "InvoiceNo"
    STOCK_CODE = "StockCode"
    DESCRIPTION = "Description"
    QUANTITY = "Quantity"
    INVOICE_DATE = "InvoiceDate"
    UNIT_PRICE = "UnitPrice"
    CUSTOMER = "CustomerID"
    COUNTRY = "Country"


SOURCE_COLUMNS: tuple[str, ...] = (
    Src.INVOICE,
    Src.STOCK_CODE,
    Src.DESCRIPTION,
    Src.QUANTITY,
    Src.INVOICE_DATE,
    Src.UNIT_PRICE,
    Src.CUSTOMER,
    Src.COUNTRY,
)

#: A product stock code: five digits, optionally followed by letters (85123A, 15056BL).
PRODUCT_CODE = r"^\d{5}[A-Z]*$"

#: Codes that are not products, by kind. The letter codes fail PRODUCT_CODE anyway and are listed
#: to give the reject a precise reason; the numeric ones look like products but are services.
NON_PRODUCT_CODES: dict[str, tuple[str, ...]] = {
    "postage & carriage": ("POST", "DOT", "C2", "23444"),  # 23444 "Next Day Carriage"
    "manual entry": ("M",),
    "discount": ("D",),
    "samples": ("S",),
    "bad debt adjustment": ("B",),
    "fees & charges": ("BANK CHARGES", "AMAZONFEE", "CRUK", "23574"),  # 23574 "PACKING CHARGE"
    "cushion pad filler": ("PADS",),  # "PADS TO MATCH ALL CUSHIONS" at 0.001
    "image service": ("23702",),  # "High Resolution Image"
}
#: Gift vouchers: gift_0001_10 ... gift_0001_50 (matched after upper-casing).
GIFT_VOUCHER = r"^GIFT_\d+_\d+$"

#: Accepted InvoiceDate layouts: the published CSV, ISO with T, and the spreadsheet export.
_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
)

# Internal parsed columns (prefixed so they never clash with source columns).
_INVOICE, _CODE, _QTY, _PRICE, _TS, _MEMBER, _DESC = (
    "__invoice",
    "__code",
    "__qty",
    "__price",
    "__ts",
    "__member",
    "__desc",
)
_FIRST_SAME, _FIRST_CANON, _NON_PRODUCT = "__first_same", "__first_canon", "__non_product"


def _blank_to_null(expr: pl.Expr) -> pl.Expr:
    stripped = expr.str.strip_chars()
    return pl.when(stripped == "").then(None).otherwise(stripped)


def _parse(source: SourceRows) -> pl.DataFrame:
    """Add typed and normalised copies of the source cells."""
    loc = pl.col(source.location)
    raw_date = _blank_to_null(pl.col(Src.INVOICE_DATE))
    frame = source.frame.with_columns(
        _blank_to_null(pl.col(Src.INVOICE)).str.to_uppercase().alias(_INVOICE),
        _blank_to_null(pl.col(Src.STOCK_CODE)).str.to_uppercase().alias(_CODE),
        _blank_to_null(pl.col(Src.QUANTITY)).cast(pl.Int64, strict=False).alias(_QTY),
        _blank_to_null(pl.col(Src.UNIT_PRICE)).cast(pl.Float64, strict=False).alias(_PRICE),
        pl.coalesce(
            [raw_date.str.to_datetime(f, strict=False, time_unit="us") for f in _DATE_FORMATS]
        ).alias(_TS),
        _blank_to_null(pl.col(Src.CUSTOMER)).str.replace(r"\.0+$", "").alias(_MEMBER),
        loc.min().over(list(source.columns)).alias(_FIRST_SAME),
    )
    # Per distinct value (a few thousand), not per line: code kind and tidied description.
    kinds = frame.select(pl.col(_CODE).unique()).with_columns(
        _non_product_kind(pl.col(_CODE)).alias(_NON_PRODUCT)
    )
    descriptions = frame.select(pl.col(Src.DESCRIPTION).unique()).with_columns(
        _blank_to_null(pl.col(Src.DESCRIPTION)).str.replace_all(r"\s+", " ").alias(_DESC)
    )
    frame = frame.join(kinds, on=_CODE, how="left", nulls_equal=True, maintain_order="left")
    frame = frame.join(
        descriptions, on=Src.DESCRIPTION, how="left", nulls_equal=True, maintain_order="left"
    )
    canonical = [_INVOICE, _CODE, _QTY, _PRICE, _TS, _MEMBER]
    return frame.with_columns(loc.min().over(canonical).alias(_FIRST_CANON))


def _non_product_kind(code: pl.Expr) -> pl.Expr:
    """Kind of a non-product stock code; null for a product code."""
    cases = [(code.is_in(list(codes)), pl.lit(kind)) for kind, codes in NON_PRODUCT_CODES.items()]
    cases += [
        (code.str.contains(GIFT_VOUCHER), pl.lit(_GIFT_VOUCHER_KIND)),
        (~code.str.contains(PRODUCT_CODE), pl.lit(_OTHER_CODE_KIND)),
    ]
    return first_match(cases, pl.lit(None, pl.String))


_GIFT_VOUCHER_KIND = "gift voucher"
_OTHER_CODE_KIND = "not a product code (5 digits + optional letters)"


def _non_product_kinds() -> tuple[str, ...]:
    return (*NON_PRODUCT_CODES, _GIFT_VOUCHER_KIND, _OTHER_CODE_KIND)


def _rules(source: SourceRows) -> list[Rule]:
    c = pl.col
    unit = source.unit
    cancel = c(_INVOICE).str.starts_with("C")

    def text(column: str) -> pl.Expr:
        return pl.format("{} is '{}'", pl.lit(column), c(column).fill_null(""))

    rules = [
        Rule("unreadable quantity", Src.QUANTITY, c(_QTY).is_null(), text(Src.QUANTITY)),
        Rule("unreadable unit price", Src.UNIT_PRICE, c(_PRICE).is_null() | ~c(_PRICE).is_finite(),
             text(Src.UNIT_PRICE)),
        Rule("unreadable invoice date", Src.INVOICE_DATE, c(_TS).is_null(), text(Src.INVOICE_DATE)),
        Rule("missing customer id", Src.CUSTOMER, c(_MEMBER).is_null(),
             pl.lit("CustomerID is empty (guest checkout)")),
        Rule("missing stock code", Src.STOCK_CODE, c(_CODE).is_null(),
             pl.lit("StockCode is empty")),
        Rule("malformed customer id", Src.CUSTOMER, ~c(_MEMBER).str.contains(r"^\d+$"),
             text(Src.CUSTOMER)),
        Rule("not a sale or cancellation invoice", Src.INVOICE,
             ~c(_INVOICE).fill_null("").str.contains(r"^C?\d+$"),
             pl.format("InvoiceNo {} ({})", c(Src.INVOICE).fill_null(""),
                       c(Src.DESCRIPTION).fill_null(""))),
    ]  # fmt: skip
    rules += [
        Rule(
            f"non-product code: {kind}",
            Src.STOCK_CODE,
            c(_NON_PRODUCT) == kind,
            pl.format("StockCode {} ({})", c(Src.STOCK_CODE), c(Src.DESCRIPTION).fill_null("")),
        )
        for kind in _non_product_kinds()
    ]
    rules += [
        Rule("zero quantity", Src.QUANTITY, c(_QTY) == 0, text(Src.QUANTITY)),
        Rule("non-positive unit price", Src.UNIT_PRICE, c(_PRICE) <= 0, text(Src.UNIT_PRICE)),
        Rule("stock adjustment (negative quantity on a sale invoice)", Src.QUANTITY,
             ~cancel & (c(_QTY) < 0),
             pl.format("Quantity {} on invoice {} ({})", c(_QTY), c(Src.INVOICE),
                       c(Src.DESCRIPTION).fill_null(""))),
        Rule("positive quantity on a cancellation invoice", Src.QUANTITY, cancel & (c(_QTY) > 0),
             pl.format("Quantity {} on invoice {}", c(_QTY), c(Src.INVOICE))),
        Rule("exact duplicate", "", c(source.location) != c(_FIRST_SAME),
             pl.format("exact duplicate of {} {}", pl.lit(unit), c(_FIRST_SAME))),
        Rule("duplicate purchase", Src.DESCRIPTION, c(source.location) != c(_FIRST_CANON),
             pl.format("same invoice, customer, product, time, quantity and price as {} {} "
                       "(only description, country or code case differ)",
                       pl.lit(unit), c(_FIRST_CANON))),
    ]  # fmt: skip
    return rules


def _most_frequent(frame: pl.DataFrame, key: str, value: str, location: str) -> pl.DataFrame:
    """Per ``key``, its most frequent non-null ``value``; ties go to the value seen first."""
    return (
        frame.filter(pl.col(value).is_not_null())
        .group_by(key, value)
        .agg(pl.len().alias("__n"), pl.col(location).min().alias("__first"))
        .sort([key, "__n", "__first"], descending=[False, True, False])
        .unique(subset=[key], keep="first", maintain_order=True)
        .select(key, value)
    )


def _members(parsed: pl.DataFrame, location: str) -> pl.DataFrame:
    """Every well-formed customer id, with first invoice time and most frequent country."""
    lines = parsed.filter(
        pl.col(_MEMBER).str.contains(r"^\d+$").fill_null(False) & pl.col(_TS).is_not_null()
    ).select(
        pl.col(_MEMBER).alias(Col.MEMBER_ID),
        pl.col(_TS),
        _blank_to_null(pl.col(Src.COUNTRY)).alias(Col.REGION),
        pl.col(location),
    )
    joined = lines.group_by(Col.MEMBER_ID).agg(pl.col(_TS).min().alias(Col.JOINED_AT))
    region = _most_frequent(lines, Col.MEMBER_ID, Col.REGION, location)
    members = joined.join(region, on=Col.MEMBER_ID, how="left").sort(Col.MEMBER_ID)
    return conform(members.with_columns(pl.lit([], pl.List(pl.String)).alias(Col.TAGS)), MEMBERS)


def _items(parsed: pl.DataFrame, location: str) -> pl.DataFrame:
    """Every product code seen with a positive price: title, median price, category, tags."""
    lines = parsed.filter(
        pl.col(_NON_PRODUCT).is_null()
        & pl.col(_CODE).is_not_null()
        & (pl.col(_PRICE) > 0).fill_null(False)
        & pl.col(_PRICE).is_finite().fill_null(False)
    ).select(pl.col(_CODE).alias(Col.ITEM_ID), _DESC, _PRICE, location)
    price = lines.group_by(Col.ITEM_ID).agg(pl.col(_PRICE).median().alias(Col.PRICE))
    title = _most_frequent(lines, Col.ITEM_ID, _DESC, location).rename({_DESC: Col.TITLE})
    items = (
        price.join(title, on=Col.ITEM_ID, how="left")
        .with_columns(
            category_expr(pl.col(Col.TITLE)).alias(Col.CATEGORY),
            tags_expr(pl.col(Col.TITLE)).alias(Col.TAGS),
            pl.lit(True).alias(Col.ACTIVE),
        )
        .sort(Col.ITEM_ID)
    )
    return conform(items, ITEMS)


def _purchases(kept: pl.DataFrame) -> pl.DataFrame:
    return conform(
        kept.select(
            pl.col(_INVOICE).alias(Col.ORDER_ID),
            pl.col(_MEMBER).alias(Col.MEMBER_ID),
            pl.col(_CODE).alias(Col.ITEM_ID),
            pl.col(_TS).alias(Col.TS),
            pl.col(_QTY).alias(Col.QUANTITY),
            (pl.col(_QTY) * pl.col(_PRICE)).round(4).alias(Col.AMOUNT),
        ),
        PURCHASES,
    )


def _source_facts(parsed: pl.DataFrame, source: SourceRows) -> dict[str, object]:
    """The source's own profile (independent of which rule rejected what)."""
    row = parsed.select(
        pl.len().alias("lines"),
        pl.col(Src.INVOICE).n_unique().alias("invoices"),
        pl.col(_INVOICE).str.starts_with("C").fill_null(False).sum().alias("cancellation_lines"),
        pl.col(_MEMBER).is_null().sum().alias("lines_without_customer_id"),
        (pl.col(source.location) != pl.col(_FIRST_SAME)).sum().alias("exact_duplicate_lines"),
        pl.col(_MEMBER).drop_nulls().n_unique().alias("customers"),
        pl.col(Src.STOCK_CODE).n_unique().alias("stock_codes"),
        pl.col(_TS).min().dt.strftime("%Y-%m-%d %H:%M:%S").alias("first_invoice_date"),
        pl.col(_TS).max().dt.strftime("%Y-%m-%d %H:%M:%S").alias("last_invoice_date"),
    ).row(0, named=True)
    return dict(row)


def _category_facts(items: pl.DataFrame, purchases: pl.DataFrame) -> dict[str, object]:
    """Share of items and of purchase rows whose category is not ``other``; counts per category."""
    n_items = items.height
    per_category = dict.fromkeys(categories(), 0)
    for category, n in items.group_by(Col.CATEGORY).len().iter_rows():
        per_category[str(category)] = int(n)
    categorized_rows = purchases.join(
        items.select(Col.ITEM_ID, Col.CATEGORY), on=Col.ITEM_ID, how="left"
    ).select((pl.col(Col.CATEGORY) != OTHER).fill_null(False).sum())
    tag_counts = (
        items.select(pl.col(Col.TAGS).explode().drop_nulls().alias("tag"))
        .group_by("tag")
        .len()
        .sort(["len", "tag"], descending=[True, False])
    )
    rows = purchases.height
    return {
        "items_categorized_share": round((n_items - per_category[OTHER]) / n_items, 4)
        if n_items
        else 0.0,
        "purchase_rows_categorized_share": round(int(categorized_rows.item()) / rows, 4)
        if rows
        else 0.0,
        "items_per_category": dict(sorted(per_category.items(), key=lambda kv: -kv[1])),
        "items_per_tag": {str(t): int(n) for t, n in tag_counts.iter_rows()},
    }


def build_online_retail(src: Path, progress: Progress | None = None) -> ImportResult:
    """Read the Online Retail file at ``src`` and build the canonical tables (nothing written)."""
    step = progress or (lambda _name: None)
    step("reading the source")
    source = read_source(Path(src), SOURCE_COLUMNS, what="Online Retail")
    step("checking lines")
    parsed = _parse(source)
    rules = _rules(source)
    kept, rejects = split_rejects(apply_rules(parsed, rules), source)
    rows_in = parsed.height
    check_accounted(rows_in, kept.height, rejects.height, source.path)
    step("building members, items and purchases")
    purchases = _purchases(kept)
    members = _members(parsed, source.location)
    items = _items(parsed, source.location)
    orders, return_rows, return_orders = purchase_counts(purchases)
    report = ImportReport(
        importer=IMPORTER,
        source=source.path,
        rows_in=rows_in,
        rows_kept=kept.height,
        rejects_by_reason=counts_by_reason(rejects, rules),
        members=members.height,
        items=items.height,
        orders=orders,
        return_rows=return_rows,
        return_orders=return_orders,
        facts={"source": _source_facts(parsed, source), **_category_facts(items, purchases)},
    )
    return ImportResult(Dataset(members, items, purchases), rejects, report)


def import_online_retail(
    src: Path, out: Path, fmt: Format = "parquet", progress: Progress | None = None
) -> ImportReport:
    """Import ``src`` into the dataset folder ``out`` (tables, rejects file, import report)."""
    result = build_online_retail(src, progress)
    if progress is not None:
        progress("writing the dataset")
    write_import(result, out, fmt)
    return result.report

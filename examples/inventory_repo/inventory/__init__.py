"""A small inventory library, laid out the way real ones are: a catalogue, an order book,
reports and text helpers, each with the slow spots such code grows."""

from inventory.catalog import Catalog, Item
from inventory.orders import Order, OrderBook
from inventory.reports import render_summary
from inventory.text import normalize_tags, tag_counts

__all__ = [
    "Catalog",
    "Item",
    "Order",
    "OrderBook",
    "normalize_tags",
    "render_summary",
    "tag_counts",
]

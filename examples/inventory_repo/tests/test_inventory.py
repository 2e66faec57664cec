"""The library's own suite: it checks behaviour, and its larger cases are what make the
slow spots show in a profile."""

import random

import pytest

from inventory import Catalog, Item, Order, OrderBook, normalize_tags, render_summary, tag_counts


def make_catalog(n: int) -> Catalog:
    return Catalog([Item(f"sku{i}", f"item {i}", 1.0 + (i * 7) % 50, ["a"]) for i in range(n)])


def make_orders(n: int, customers: int, skus: int) -> OrderBook:
    rng = random.Random(n)
    return OrderBook(
        [
            Order(i, f"c{rng.randrange(customers)}", f"sku{rng.randrange(skus)}", 1 + i % 3)
            for i in range(n)
        ]
    )


def test_unknown_skus_keep_their_order() -> None:
    catalog = make_catalog(3000)
    wanted = [f"sku{i}" for i in range(2500, 3500)]
    assert catalog.unknown(wanted) == [f"sku{i}" for i in range(3000, 3500)]
    assert catalog.unknown([]) == []


def test_price_lookup_and_cheapest() -> None:
    catalog = make_catalog(100)
    assert catalog.price_of("sku3") == 22.0
    with pytest.raises(KeyError):
        catalog.price_of("nope")
    assert [i.price for i in catalog.cheapest(3)] == [1.0, 1.0, 2.0]


def test_customers_in_order_of_first_order() -> None:
    book = make_orders(4000, 1500, 100)
    customers = book.customers()
    assert len(customers) == len(set(customers))
    assert customers[0] == book.orders[0].customer


def test_orders_priced() -> None:
    book = make_orders(800, 50, 900)
    prices = [(f"sku{i}", 2.0) for i in range(0, 900, 2)]
    priced = book.with_prices(prices)
    assert all(total == 2.0 * o.quantity for (oid, total), o in zip(priced, [o for o in book.orders if int(o.sku[3:]) % 2 == 0]))


def test_summary_and_tags() -> None:
    rows = [(f"row{i}", i * 1.5) for i in range(3000)]
    text = render_summary(rows)
    assert text.startswith("summary\nrow0: 0.00\n") and text.count("\n") == 3001
    tags = normalize_tags([" A ", "b", "", "a"] * 500)
    counts = tag_counts(tags)
    assert counts == {"a": 1000, "b": 500}

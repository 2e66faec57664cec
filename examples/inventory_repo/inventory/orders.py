"""Orders and the book that keeps them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Order:
    order_id: int
    customer: str
    sku: str
    quantity: int


class OrderBook:
    def __init__(self, orders: list[Order]) -> None:
        self.orders = list(orders)

    def customers(self) -> list[str]:
        """Every customer once, in the order of their first order."""
        seen = []
        for order in self.orders:
            if order.customer not in seen:
                seen.append(order.customer)
        return seen

    def with_prices(self, prices: list[tuple[str, float]]) -> list[tuple[int, float]]:
        """(order id, total) for every order whose SKU has a price."""
        out = []
        for order in self.orders:
            for sku, price in prices:
                if sku == order.sku:
                    out.append((order.order_id, price * order.quantity))
        return out

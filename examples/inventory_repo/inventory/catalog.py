"""The catalogue: items by SKU."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Item:
    sku: str
    name: str
    price: float
    tags: list[str] = field(default_factory=list)


class Catalog:
    def __init__(self, items: list[Item]) -> None:
        self.items = list(items)
        self.skus = [item.sku for item in self.items]

    def add(self, item: Item) -> None:
        self.items.append(item)
        self.skus.append(item.sku)

    def unknown(self, skus: list[str]) -> list[str]:
        """The SKUs that are not in the catalogue, in the order given."""
        return [sku for sku in skus if sku not in self.skus]

    def price_of(self, sku: str) -> float:
        for item in self.items:
            if item.sku == sku:
                return item.price
        raise KeyError(sku)

    def cheapest(self, n: int) -> list[Item]:
        return sorted(self.items, key=lambda item: item.price)[:n]

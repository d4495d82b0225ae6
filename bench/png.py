"""A PNG of latency distributions, drawn without a plotting library.

One row per runtime: every sample is a dot on a shared logarithmic time
axis (jittered vertically), with the median as a bar. Text is drawn with a
tiny built-in 3x5 font, enough for labels and axis ticks.
"""

from __future__ import annotations

import math
import random
import statistics
import struct
import zlib

_GLYPHS: dict[str, tuple[int, ...]] = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), ".": (0, 0, 0, 0, 2), " ": (0, 0, 0, 0, 0),
    "m": (0, 0, 7, 7, 5), "s": (0, 3, 6, 3, 6), "a": (0, 6, 3, 5, 7), "b": (4, 6, 5, 5, 6),
    "c": (0, 3, 4, 4, 3), "d": (1, 3, 5, 5, 3), "e": (0, 7, 7, 4, 3), "i": (2, 0, 2, 2, 2),
    "n": (0, 6, 5, 5, 5), "p": (0, 6, 5, 6, 4), "r": (0, 6, 5, 4, 4), "t": (2, 7, 2, 2, 3),
    "u": (0, 5, 5, 5, 7), "v": (0, 5, 5, 5, 2), "x": (0, 5, 2, 2, 5), "l": (2, 2, 2, 2, 3),
    "o": (0, 2, 5, 5, 2), "g": (0, 7, 5, 3, 6), "h": (4, 6, 5, 5, 5), "k": (4, 5, 6, 5, 5),
    "y": (0, 5, 7, 1, 6), "w": (0, 5, 5, 7, 7), "f": (3, 4, 6, 4, 4), "-": (0, 0, 7, 0, 0),
    "+": (0, 2, 7, 2, 0), "(": (1, 2, 2, 2, 1), ")": (4, 2, 2, 2, 4), ",": (0, 0, 0, 2, 4),
    "/": (1, 1, 2, 4, 4), ":": (0, 2, 0, 2, 0), "=": (0, 7, 0, 7, 0),
}


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, color: tuple[int, int, int], radius: int = 1) -> None:
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                self.set(x + dx, y + dy, color)

    def set(self, x: int, y: int, color: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            offset = (y * self.width + x) * 3
            self.pixels[offset:offset + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for step in range(steps + 1):
            self.set(x0 + (x1 - x0) * step // steps, y0 + (y1 - y0) * step // steps, color)

    def text(self, x: int, y: int, text: str, color: tuple[int, int, int] = (0, 0, 0), scale: int = 2) -> None:
        for index, char in enumerate(text.lower()):
            rows = _GLYPHS.get(char, _GLYPHS[" "])
            for row, bits in enumerate(rows):
                for column in range(3):
                    if bits >> (2 - column) & 1:
                        for sy in range(scale):
                            for sx in range(scale):
                                self.set(x + (index * 4 + column) * scale + sx, y + row * scale + sy, color)

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.pixels[y * self.width * 3:(y + 1) * self.width * 3])
                       for y in range(self.height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(
            b"IEND", b"")


COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def distributions(title: str, samples: dict[str, list[float]], path: str) -> None:
    """Write ``samples`` (name: milliseconds) as a PNG strip chart to ``path``."""
    width, row_height, left, top = 900, 70, 260, 50
    height = top + row_height * len(samples) + 60
    canvas = Canvas(width, height)
    canvas.text(10, 12, title, scale=3)
    values = [v for vs in samples.values() for v in vs if v > 0]
    low, high = math.log10(min(values) * 0.8), math.log10(max(values) * 1.2)

    def x_of(value: float) -> int:
        return left + int((math.log10(value) - low) / (high - low) * (width - left - 30))

    rng = random.Random(7)
    for row, (name, vs) in enumerate(samples.items()):
        y = top + row * row_height + row_height // 2
        color = COLORS[row % len(COLORS)]
        canvas.text(10, y - 6, name)
        for value in vs:
            canvas.dot(x_of(value), y + rng.randint(-18, 18), color, 1)
        median = statistics.median(vs)
        canvas.line(x_of(median), y - 24, x_of(median), y + 24, (0, 0, 0))
        canvas.text(x_of(median) + 4, y - 30, f"{median:.1f} ms", scale=2)
    axis = top + row_height * len(samples) + 10
    canvas.line(left, axis, width - 30, axis, (0, 0, 0))
    tick = 10 ** math.floor(low)
    while tick < 10 ** high:
        for factor in (1, 2, 5):
            value = tick * factor
            if 10 ** low <= value <= 10 ** high:
                x = x_of(value)
                canvas.line(x, axis, x, axis + 6, (0, 0, 0))
                canvas.text(x - 6, axis + 10, f"{value:g}")
        tick *= 10
    canvas.text(width - 120, axis + 30, "ms (log)")
    with open(path, "wb") as handle:
        handle.write(canvas.png())

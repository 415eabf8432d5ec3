"""Key/value cache for incremental decoding with `Decoder.forward_cached`.

Per layer it keeps the rotated self-attention keys and values of every position decoded so far, in
buffers of seq_len positions allocated on first use (dtype and device of the first keys). Each step
reads only the keys inside the sliding window of its queries. The cross-attention keys and values of
the fixed latents z are computed once when the cache is made and reused at every step.

Decoding stops at seq_len positions: RoPE angles and the latents' positions are only defined (and
trained) inside that context, so the cache refuses to grow past it rather than sliding.
"""

import torch
from torch import Tensor

from ltm.errors import LtmError


class KVCache:
    def __init__(self, batch: int, capacity: int, window: int,
                 cross: list[tuple[Tensor, Tensor] | None]) -> None:
        self.batch = batch
        self.capacity = capacity  # the model's seq_len
        self.window = window
        self.length = 0  # positions already decoded
        self._cross = cross
        self._keys: list[Tensor | None] = [None] * len(cross)
        self._values: list[Tensor | None] = [None] * len(cross)

    def _first_visible(self) -> int:
        # the earliest key the first new query (at position self.length) may attend to
        return max(0, self.length - self.window + 1)

    def positions(self, n_new: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Positions of the next n_new queries and of every key they can see (cached + new)."""
        end = self.length + n_new
        if end > self.capacity:
            raise LtmError(f"decoding past the context: {end} positions > seq_len {self.capacity}")
        return (torch.arange(self.length, end, device=device),
                torch.arange(self._first_visible(), end, device=device))

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new keys/values (B, H, S_new, head_dim) of one layer; return the visible ones."""
        if self._keys[layer] is None:
            shape = (*k.shape[:2], self.capacity, k.shape[3])
            self._keys[layer] = k.new_zeros(shape)
            self._values[layer] = v.new_zeros(shape)
        keys, values = self._keys[layer], self._values[layer]
        end = self.length + k.shape[2]
        keys[:, :, self.length:end] = k
        values[:, :, self.length:end] = v
        start = self._first_visible()
        return keys[:, :, start:end], values[:, :, start:end]

    def cross_kv(self, layer: int) -> tuple[Tensor, Tensor] | None:
        """Keys and values of layer's latents, or None when decoding without z."""
        return self._cross[layer]

    def advance(self, n_new: int) -> None:
        """Called once per forward_cached, after every layer has stored its keys."""
        self.length += n_new

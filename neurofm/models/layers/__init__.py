"""Building blocks shared by the models: rotary time embedding, attention, vocabularies."""

from neurofm.models.layers.attention import (
    Dropout,
    FeedForward,
    RotaryCrossAttention,
    RotarySelfAttention,
)
from neurofm.models.layers.rotary import RotaryTimeEmbedding
from neurofm.models.layers.vocab import VocabEmbedding

__all__ = [
    "Dropout",
    "FeedForward",
    "RotaryCrossAttention",
    "RotarySelfAttention",
    "RotaryTimeEmbedding",
    "VocabEmbedding",
]

"""Offline token counting: what a request will cost before the upstream says so.

`encodings` picks and loads the tiktoken encoding for a model without the network, `chat` counts
prompts by OpenAI's rules (and caches recent counts), `images` sizes image inputs from their headers.
"""

from billing.tokens.chat import CountCache, count_chat_prompt, count_completion_prompt, count_embedding_input
from billing.tokens.encodings import DEFAULT_ENCODING, count_text, encoding_name_for, preload_encodings
from billing.tokens.images import DEFAULT_IMAGE_TOKENS, image_dimensions, image_tokens

__all__ = [
    "DEFAULT_ENCODING",
    "DEFAULT_IMAGE_TOKENS",
    "CountCache",
    "count_chat_prompt",
    "count_completion_prompt",
    "count_embedding_input",
    "count_text",
    "encoding_name_for",
    "image_dimensions",
    "image_tokens",
    "preload_encodings",
]

"""The signature block under a contact's e-mail, whichever provider sends it (CAN-SPAM: the
sender's postal address, and a way to unsubscribe when the provider offers one)."""

from __future__ import annotations


def signature_block(postal_address: str, unsubscribe_link: str | None) -> str:
    """Nothing when there is nothing to say: a bare "--" closing the body would look like a
    cut-off message. `unsubscribe_link` is the provider's placeholder, filled in per
    recipient when the mail goes out."""
    lines = [postal_address] if postal_address else []
    if unsubscribe_link:
        lines.append(f"Unsubscribe: {unsubscribe_link}")
    return "\n".join(["", "", "--", *lines]) if lines else ""

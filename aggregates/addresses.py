"""Which contacts have each phone number and e-mail address, for leads.

A lead e-mail names a person only by address. The index finds the contact the lead already
is, and the contacts whose DNC or opt-out also binds the lead: a number that texted STOP
must not be texted again because it came back through a web form.
"""

from __future__ import annotations

from collections.abc import Callable

from aggregates.contact import ContactState


def _keys(contact: ContactState) -> list[str]:
    keys = []
    if contact.email:
        keys.append("email:" + contact.email.casefold())
    if contact.phone:
        keys.append("phone:" + contact.phone)
    return keys


class AddressBook:
    """Contacts by address, in the order they first had it (so answers are deterministic)."""

    __slots__ = ("_owners",)

    def __init__(self) -> None:
        self._owners: dict[str, list[str]] = {}

    def update(self, before: ContactState, after: ContactState) -> None:
        """Follow a contact's change of phone or e-mail."""
        if before.email == after.email and before.phone == after.phone:
            return
        old, new = _keys(before), _keys(after)
        for key in old:
            if key not in new:
                owners = self._owners.get(key, [])
                if after.contact_id in owners:
                    owners.remove(after.contact_id)
                if not owners:
                    self._owners.pop(key, None)
        for key in new:
            owners = self._owners.setdefault(key, [])
            if after.contact_id not in owners:
                owners.append(after.contact_id)

    def lead_contact(
        self,
        email: str | None,
        phone: str | None,
        email_of: Callable[[str], str | None],
        within: Callable[[str], bool] = lambda _: True,
    ) -> str | None:
        """The contact a lead is: the first with its e-mail; else the first with its phone
        number that has no e-mail of its own (the same person, now with an address). A
        shared number alone does not make two people with two addresses one. Only contacts
        `within` says yes to are candidates."""
        if email:
            for contact_id in self._owners.get("email:" + email.casefold(), ()):
                if within(contact_id):
                    return contact_id
        if phone:
            for contact_id in self._owners.get("phone:" + phone, ()):
                if within(contact_id) and (not email or not email_of(contact_id)):
                    return contact_id
        return None

    def sharing(
        self, contact: ContactState, within: Callable[[str], bool] = lambda _: True
    ) -> list[str]:
        """The other contacts with the phone number or e-mail address of `contact`, of
        those `within` says yes to."""
        found: list[str] = []
        for key in _keys(contact):
            found.extend(
                c for c in self._owners.get(key, ()) if c != contact.contact_id and within(c)
            )
        return found

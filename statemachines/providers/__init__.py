"""Provider normalisers: raw envelope -> one canonical event, or the reason it is unreadable."""

"""The rehearsal's stand-ins: the bot checkout and the reference bot."""

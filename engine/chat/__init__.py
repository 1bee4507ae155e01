"""Terminal mixed-session chat (`memlab chat`): a partner per session, memories shown as they form."""

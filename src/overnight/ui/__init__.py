"""What a user watches: the live terminal view and the web dashboard."""

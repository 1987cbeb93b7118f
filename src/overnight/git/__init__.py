"""Git, run only against the harness's own git dir with hooks off."""

"""The judge: guards, the keep rule and the noise model; one object serves the loop and the hub."""

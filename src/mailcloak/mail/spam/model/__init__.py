"""The builtin spam engine's shipped model (spam-model.bin), made by `make model`."""

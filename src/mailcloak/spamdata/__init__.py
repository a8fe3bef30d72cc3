"""What the builtin spam engine learned on this installation, shared by every node."""

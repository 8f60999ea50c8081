"""The pure data core: discovery of labelled files, the split, and image decoding."""

"""Golden integer model: the bit-exact reference of every sanitas level (see rounding.py for the rule)."""

"""Realistic, signed provider traffic: payload samples, lifecycles, `simulate` and `demo`."""

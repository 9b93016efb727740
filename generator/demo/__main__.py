"""`python -m generator.demo`: retrain the embedded demo (generator/demo/train.py)."""

from generator.demo.train import main

main()

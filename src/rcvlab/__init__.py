"""rcvlab: where inside a pretrained CNN is a continuous concept linearly encoded?"""

__version__ = "0.1.0"

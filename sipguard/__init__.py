"""sipguard: a SIP B2BUA that screens outbound calls for toll fraud."""

__version__ = "0.1.0"
__all__ = ["__version__"]

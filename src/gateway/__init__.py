"""gnc-gateway: signed WCO Utility Block exchanges between customs administrations."""

__version__ = "0.1.0"

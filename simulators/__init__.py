"""Working peers for tests and demos: button panels, boards, the business and regional systems."""

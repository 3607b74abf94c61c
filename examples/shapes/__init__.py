"""A tiny example package for the fleet's demo job."""

"""Tables and figures from the run store (DESIGN.md section 6)."""

// Table operations exported to the control plane (owned by the tables work).

"""lockgate_sim: the hardware simulator, a fake BlueZ on D-Bus serving simulated Ilockit locks."""

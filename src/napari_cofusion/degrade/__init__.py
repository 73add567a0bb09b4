"""How an HR scene becomes an (LRHSI, HRMSI) pair: Wald-protocol simulation, estimation of the
PSF / SRF from a pair, and the data-consistency projection. Imports only ``core``."""

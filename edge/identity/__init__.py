"""Who is enrolled and who a face is: the sealed gallery, the open-set matcher, 1:N search and the measured
operating points."""

"""`make bench` / `doppel bench`: performance figures measured on the real stack, side by side.

Every comparison is made in one run on one machine (a figure and its baseline alternate), and
regressions are judged on ratios, which survive a noisy shared machine far better than absolute
times.
"""

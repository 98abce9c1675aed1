"""The DPO console's view models: what each page of `dpo-console` shows, from the desk's operations.

Above the desk (shared/desk/operations.py is the one door both the console and the API use):
these modules add no rule, they shape the desk's answers for the pages (markers, labels,
subject names for the DPO's eyes, the chart) and read the console's forms.
"""

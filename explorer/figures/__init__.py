"""Pure plotly figure builders, one module per topic (no streamlit: tested without a browser, and used both by
the app's pages and by the offline HTML report). Token labels arrive printable; hover text is escaped here."""

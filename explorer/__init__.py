"""GPT Explorer: the Streamlit app built on the gpt/ library (`streamlit run explorer/app.py`)."""

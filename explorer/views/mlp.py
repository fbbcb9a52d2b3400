"""MLP neurons (being written)."""
import streamlit as st

st.title("MLP neurons")

"""veille"""

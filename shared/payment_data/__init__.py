"""payment_data"""

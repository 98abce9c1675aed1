"""identity: who is calling.

client      client-area bearer tokens (authenticate_client), step-up codes (require_step_up)
dpo         DPO credentials (create, revoke, authenticate_dpo)
guards      the route guards: client_token(), step_up(action), dpo_credential
"""

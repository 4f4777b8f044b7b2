"""The call centre (issue 15): the telephony reports incoming calls, the agent's intake pops."""

"""The knowledge base (知识库, SPEC §7): policy answers owned by departments, reviewed and
published by the service centre, searched while the agent types, used to answer
consultations on the call, and learning from the consultations it could not answer."""

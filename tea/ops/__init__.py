"""Operations: health, readiness, OpenAPI, retention."""

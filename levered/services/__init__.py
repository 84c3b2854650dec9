"""Use cases. Each public function owns its transaction and speaks domain errors."""

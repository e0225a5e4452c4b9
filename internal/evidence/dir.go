package evidence

// Dir is the evidence directory the sealer keeps its keys and log in, where
// what is kept next to the log (the promotion archive's index) goes too.
func (s *Sealer) Dir() string { return s.dir }

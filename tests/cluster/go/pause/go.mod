module ferrolb.local/pause

go 1.22

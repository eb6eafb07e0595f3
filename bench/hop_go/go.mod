module conductor-worker-operator/bench/hop_go

go 1.22

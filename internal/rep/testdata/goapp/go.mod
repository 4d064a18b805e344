module example.com/apps/goapp

go 1.22

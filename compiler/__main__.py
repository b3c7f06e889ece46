from compiler.main import main

main()
